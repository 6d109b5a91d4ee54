"""Preference pairs with Llama 2's fields, their validation, the pair filter, and the HH-RLHF loader.

A pair is one prompt (a conversation), a chosen and a rejected response, a 4-level rating
(significantly better, better, slightly better, negligibly better/unsure), a safe/unsafe label per
response and whether the prompt is a safety prompt. Margins turn ratings into the m(r) of Llama 2's
ranking loss −log σ(r_c − r_r − m(r)).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safealign.errors import DataError
from safealign.io import read_jsonl

RATINGS = ("significantly_better", "better", "slightly_better", "negligibly_better")
MARGINS = {
    "none": (0.0, 0.0, 0.0, 0.0),
    "small": (1.0, 2 / 3, 1 / 3, 0.0),
    "large": (3.0, 2.0, 1.0, 0.0),
}
"""Llama 2 Table 27: margin per rating, in the order of RATINGS."""


def margin(rating: str, scheme: str = "small") -> float:
    if scheme not in MARGINS:
        raise ValueError(f"unknown margin scheme {scheme!r}; known: {', '.join(MARGINS)}")
    return MARGINS[scheme][RATINGS.index(rating)]


@dataclass
class PreferencePair:
    id: str
    prompt: list[dict[str, str]]
    """The conversation up to and including the final user turn."""
    chosen: str
    rejected: str
    rating: str
    is_safety: bool
    chosen_safe: bool | None = None
    rejected_safe: bool | None = None
    category: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        return self.prompt[-1]["content"]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def keep_pair(pair: PreferencePair) -> bool:
    """Llama 2's filter: drop a pair whose chosen response is unsafe while the rejected one is safe."""
    return not (pair.chosen_safe is False and pair.rejected_safe is True)


def validate_pair(obj: dict[str, Any], path, where: str) -> PreferencePair:
    rec = f"{where} (id={obj.get('id', '?')})"
    for key in ("id", "prompt", "chosen", "rejected", "rating"):
        if key not in obj:
            raise DataError(path, rec, f"missing field {key!r}")
    prompt = obj["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not (isinstance(prompt, list) and prompt and all(
            isinstance(t, dict) and isinstance(t.get("content"), str) and t.get("role") in ("system", "user",
                                                                                               "assistant")
            for t in prompt)) or prompt[-1]["role"] != "user" or not prompt[-1]["content"].strip():
        raise DataError(path, rec, "prompt must be a non-empty string or a conversation ending in a user turn")
    for key in ("chosen", "rejected"):
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise DataError(path, rec, f"empty {key} response")
    if obj["rating"] not in RATINGS:
        raise DataError(path, rec, f"bad rating {obj['rating']!r} (expected one of {', '.join(RATINGS)})")
    for key in ("chosen_safe", "rejected_safe", "is_safety"):
        if obj.get(key) is not None and not isinstance(obj[key], bool):
            raise DataError(path, rec, f"{key} must be true/false, found {obj[key]!r}")
    return PreferencePair(id=str(obj["id"]), prompt=prompt, chosen=obj["chosen"], rejected=obj["rejected"],
                          rating=obj["rating"], is_safety=bool(obj.get("is_safety", False)),
                          chosen_safe=obj.get("chosen_safe"), rejected_safe=obj.get("rejected_safe"),
                          category=obj.get("category"), source=obj.get("source") or Path(path).name,
                          meta=obj.get("meta") or {})


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Human (or any) pairs from JSONL in the PreferencePair schema; bad records raise a located DataError."""
    return [validate_pair(obj, path, f"line {n}") for n, obj in read_jsonl(path)]


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """Split an HH-RLHF transcript ("\\n\\nHuman: …\\n\\nAssistant: …") into chat turns."""
    parts = _TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    turns = []
    for role, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    return turns


def load_hh_rlhf(path: str | Path, is_safety: bool, limit: int | None = None) -> list[PreferencePair]:
    """HH-RLHF pairs (harmless-base → safety, helpful-base → helpfulness). HH has no ratings: all 'better'."""
    out = []
    for n, obj in read_jsonl(path):
        if "chosen" not in obj or "rejected" not in obj:
            raise DataError(path, f"line {n}", "missing field 'chosen' or 'rejected'")
        chosen, rejected = parse_hh_dialogue(obj["chosen"]), parse_hh_dialogue(obj["rejected"])
        if len(chosen) < 2 or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
            continue  # transcripts that do not end in an assistant turn carry no comparison
        if not chosen[-1]["content"] or not rejected[-1]["content"]:
            continue
        out.append(PreferencePair(id=f"hh-{Path(path).parent.name}-{Path(path).name.split('.')[0]}-{n}",
                                  prompt=chosen[:-1], chosen=chosen[-1]["content"],
                                  rejected=rejected[-1]["content"], rating="better", is_safety=is_safety,
                                  source=str(path)))
        if limit and len(out) >= limit:
            break
    return out
