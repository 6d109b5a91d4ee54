"""Closing the loop: successful attacks become new adversarial prompts for the next safety SFT or
context-distillation round, in the seed schema (src/safealign/data/seed/SCHEMA.md).

An attack is exported only when it cannot leak an evaluation set into training: its seed is not
held out (public sets, our dev split, MultiJail), and neither its prompt nor any earlier turn equals or
contains an evaluation prompt after normalisation. It is also dropped when the same prompt (and
context) is already in our seed data or earlier in the export.

The `response` is a policy-following refusal from a fixed template per risk category and language
(written by us, marked `response_is_template`): good enough to train the refusal, worth a human edit,
and replaceable by context distillation, which regenerates answers anyway.
"""

from __future__ import annotations

import functools
import hashlib
import logging

from safealign.data.public import EvalPrompt
from safealign.data.records import Example, normalize_text, validate_record
from safealign.policy import Policy

log = logging.getLogger(__name__)

MIN_CONTAINED_CHARS = 25
"""An evaluation prompt shorter than this (normalised) is only matched exactly, not as a substring."""

CATEGORY_RESPONSES = {
    "illicit_criminal": (
        "I can't help with that. It would mean helping to commit a crime or to put people in danger, which can "
        "seriously hurt others and carries heavy legal consequences for you. If there's a legitimate goal "
        "behind the question, such as protecting yourself or understanding how these crimes are prevented, "
        "I'm glad to help with that instead."),
    "hateful_harmful": (
        "I can't help with that. Content like this can hurt real people, and if you or someone else might be at "
        "risk of harm, please reach out to someone you trust or a local crisis line right away. I'm happy to "
        "help with a respectful or supportive version of what you need."),
    "unqualified_advice": (
        "I can't give that kind of personal directive: acting on it without a qualified professional could "
        "cause serious harm. If this is an emergency, contact your local emergency services. I can share "
        "general information and help you prepare questions for a doctor, financial adviser or lawyer."),
}
GENERIC_RESPONSE = ("I can't help with that, because it could cause real harm. I'm happy to help with a safe and "
                    "legitimate alternative if you tell me more about what you need.")
LANGUAGE_RESPONSES = {
    "es": "Lo siento, pero no puedo ayudar con esto porque podría causar daños reales. Con gusto te ayudo con una "
          "alternativa segura y legal.",
    "fr": "Désolé, mais je ne peux pas t'aider avec cela, car cela pourrait causer un réel préjudice. Je peux "
          "volontiers t'aider avec une alternative sûre et légale.",
    "de": "Es tut mir leid, aber dabei kann ich nicht helfen, weil es echten Schaden anrichten könnte. Gern helfe "
          "ich dir bei einer sicheren und legalen Alternative.",
    "it": "Mi dispiace, ma non posso aiutarti con questa richiesta perché potrebbe causare danni reali. Posso "
          "suggerirti volentieri un'alternativa sicura e legale.",
    "pt": "Desculpe, mas não posso ajudar com isso, porque poderia causar danos reais. Posso ajudar com prazer "
          "com uma alternativa segura e legal.",
    "zh": "抱歉，我不能帮助完成这个请求，因为它可能造成真正的伤害。如果你愿意，我可以提供安全、合法的替代方案。",
}


def safe_response(category: str | None, language: str) -> str:
    if language in LANGUAGE_RESPONSES:
        return LANGUAGE_RESPONSES[language]
    return CATEGORY_RESPONSES.get(category or "", GENERIC_RESPONSE)


class LeakGuard:
    """Is a text an evaluation prompt, or does it contain one? Normalised text, exact and substring."""

    def __init__(self, eval_prompts: list[EvalPrompt] | list[str] = (), keys: frozenset[str] = frozenset()):
        texts = [p if isinstance(p, str) else p.prompt for p in eval_prompts]
        self.exact = set(keys) | {normalize_text(t) for t in texts if t and t.strip()}
        self.long = [k for k in self.exact if len(k) >= MIN_CONTAINED_CHARS]

    def __len__(self) -> int:
        return len(self.exact)

    def leaks(self, text: str) -> bool:
        key = normalize_text(text)
        return key in self.exact or any(k in key for k in self.long)


@functools.lru_cache(maxsize=4)
def public_eval_keys(datasets_dir: str | None) -> frozenset[str]:
    """Normalised prompts of every public evaluation set present (~5k; normalising them takes seconds, so cached)."""
    from safealign.data.public import load_all_available

    return frozenset(normalize_text(p.prompt) for p in load_all_available(datasets_dir) if p.prompt.strip())


def export_successes(attempts: list[dict], policy: Policy, guard: LeakGuard, seed_examples: list[Example],
                     source: str = "successful_attacks.jsonl") -> tuple[list[dict], dict]:
    """Seed-schema records for the exportable successful attacks, and counts of what was left out and why."""
    known = {normalize_text(e.prompt) for e in seed_examples}
    seen: set[str] = set()
    out: list[dict] = []
    counts = {"successful": 0, "held_out_seed": 0, "contains_eval_prompt": 0, "duplicate": 0, "unknown_category": 0,
              "written": 0}
    for a in attempts:
        if not a.get("success"):
            continue
        counts["successful"] += 1
        if a["held_out"]:
            counts["held_out_seed"] += 1
            continue
        conversation = a["conversation"]
        prompt, context = conversation[-2]["content"], conversation[:-2]
        if guard.leaks(a["seed_prompt"]) or any(guard.leaks(t["content"]) for t in conversation if t["role"] == "user"):
            counts["contains_eval_prompt"] += 1
            continue
        key = normalize_text(" ".join([*(t["content"] for t in context), prompt]))
        if key in seen or (not context and key in known):
            counts["duplicate"] += 1
            continue
        seen.add(key)
        vector, technique = a["vector"], a["technique"]
        if vector not in policy.attack_vectors:  # e.g. `automated` (PAIR) in a policy that does not list it
            vector, technique = "direct", f"{a['vector']}:{a['technique']}"
        category = a["category"] if a["category"] in policy.risk_categories else None
        subcategory = a["subcategory"] if category and a["subcategory"] in policy.subcategories(category) else None
        if category is None:
            log.info("attempt %s: category %r not in the policy; not exported", a["attempt_id"], a["category"])
            counts["unknown_category"] += 1
            continue
        digest = hashlib.sha256(f"{a['attempt_id']}\x00{key}".encode()).hexdigest()[:10]
        record = {
            "id": f"rt-{digest}", "kind": "adversarial", "prompt": prompt,
            "response": safe_response(category, a["language"]), "category": category, "subcategory": subcategory,
            "attack_vector": vector, "technique": technique, "borderline_type": None, "language": a["language"],
            "context": [{"role": t["role"], "content": t["content"]} for t in context],
            "response_is_template": True,
            "response_language": a["language"] if a["language"] in LANGUAGE_RESPONSES else "en",
            "redteam_attempt": a["attempt_id"], "redteam_target": a["target"],
        }
        # No `source` key: the loader sets it to the file name (and, today, fails on a record that has one).
        validate_record(record, policy, source, record["id"])  # the export must load as seed data
        out.append(record)
    counts["written"] = len(out)
    return out, counts
