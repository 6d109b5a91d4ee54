"""Who the corpus talks about: pronoun groups (Llama 2 Table 9a) and HolisticBias identity terms (Table 9b).

Both count documents, not occurrences: a document "mentions" a group when any of its words is in the group.
Text and terms are tokenised the same way: lower-cased, split on everything that is not a letter or digit
(hyphens and apostrophes included, so "African-American" matches "African American" and "Jehovah's" keeps
its "s" on both sides); a trailing "+" stays on its word so "LGBTQ+" and "LGBTQ" are different terms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_TOKEN = re.compile(r"[^\W_]+\+?")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


# Llama 2, Appendix A.4.3 (after PaLM 2): the pronoun lists behind Table 9a.
PRONOUNS: dict[str, frozenset[str]] = {
    "she": frozenset({"she", "her", "hers", "herself"}),
    "he": frozenset({"he", "him", "his", "himself"}),
    "unspecified": frozenset({"they", "them", "their", "theirs", "theirself", "themself", "themselves"}),
    "1st": frozenset({"i", "me", "my", "mine", "myself", "we", "us", "our", "ours", "ourselves"}),
    "2nd": frozenset({"you", "your", "yours", "yourself", "yourselves"}),
    "3rd": frozenset(
        {
            "she",
            "her",
            "hers",
            "herself",
            "he",
            "him",
            "his",
            "himself",
            "they",
            "them",
            "their",
            "theirs",
            "theirself",
            "themself",
            "themselves",
            "it",
            "its",
            "itself",
        }
    ),
}
GENDER_GROUPS = ("she", "he", "unspecified")
PERSON_GROUPS = ("1st", "2nd", "3rd")
_ALL_GENDER = frozenset().union(*(PRONOUNS[g] for g in GENDER_GROUPS))
_ALL_PERSON = frozenset().union(*(PRONOUNS[g] for g in PERSON_GROUPS))


def pronoun_groups(tokens: Iterable[str]) -> set[str]:
    """The pronoun groups a document mentions, plus "gendered" / "any" when it mentions one of each kind."""
    words = set(tokens)
    hit = {g for g, members in PRONOUNS.items() if not members.isdisjoint(words)}
    if not _ALL_GENDER.isdisjoint(words):
        hit.add("gendered")
    if not _ALL_PERSON.isdisjoint(words):
        hit.add("any")
    return hit


AXIS_TITLES = {
    "gender_and_sex": "Gender and Sex",
    "sexual_orientation": "Sexual Orientation",
    "nationality": "Nationality",
    "race_ethnicity": "Race and Ethnicity",
    "religion": "Religion",
}

# A descriptor listed under several counted axes stays in the first axis of this order only (Llama 2
# "deduplicated across lists, removing terms found in both Gender and Sex and Sexual Orientation"; its
# Table 9b shows lgbt, lgbtq and queer under Sexual Orientation).
_DEDUP_ORDER = ("sexual_orientation", "gender_and_sex", "nationality", "race_ethnicity", "religion")


@dataclass(frozen=True)
class IdentityLexicon:
    """HolisticBias descriptors of the counted axes, as token tuples, with an index by first token."""

    axis_of: dict[tuple[str, ...], str]  # term tokens -> axis
    by_first: dict[str, tuple[tuple[str, ...], ...]]  # first token -> candidate terms, longest first
    display: dict[tuple[str, ...], str]  # term tokens -> the descriptor as listed, lower-cased ("non-binary")
    source: str

    def terms(self, axis: str) -> list[str]:
        return sorted(self.display[t] for t, a in self.axis_of.items() if a == axis)

    def match(self, tokens: list[str]) -> dict[str, set[str]]:
        """Axis → set of descriptors found (as listed, lower-cased), by longest match left to right
        ("Latin American" is one term, not "latin" and "american")."""
        found: dict[str, set[str]] = {}
        i, n = 0, len(tokens)
        by_first, axis_of = self.by_first, self.axis_of
        while i < n:
            cands = by_first.get(tokens[i])
            if cands:
                for term in cands:
                    k = len(term)
                    if tuple(tokens[i : i + k]) == term:
                        found.setdefault(axis_of[term], set()).add(self.display[term])
                        i += k
                        break
                else:
                    i += 1
            else:
                i += 1
        return found


def load_identity_lexicon(
    root: Path, axes: Iterable[str], stopterms: Iterable[str] = (), version: str = "v1.1"
) -> IdentityLexicon:
    """Read `root/<version>/descriptors.json` ({axis: {bucket: [str | {"descriptor": str}]}})."""
    from safealign.errors import DataError

    path = Path(root) / version / "descriptors.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            path, None, "HolisticBias descriptors not found; set datasets_dir / $SAFEALIGN_DATASETS"
        ) from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"line {e.lineno}", f"invalid JSON ({e.msg})") from None
    axes = list(axes)
    missing = [a for a in axes if a not in data]
    if missing:
        raise DataError(path, None, f"axes {missing} not found; the file has {sorted(data)}")
    stop = {tuple(tokenize(s)) for s in stopterms}
    axis_of: dict[tuple[str, ...], str] = {}
    display: dict[tuple[str, ...], str] = {}
    for axis in sorted(axes, key=lambda a: _DEDUP_ORDER.index(a) if a in _DEDUP_ORDER else len(_DEDUP_ORDER)):
        for bucket in data[axis].values():
            for item in bucket:
                surface = item if isinstance(item, str) else item["descriptor"]
                term = tuple(tokenize(surface))
                if term and term not in stop and term not in axis_of:
                    axis_of[term] = axis
                    display[term] = surface.lower()
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for term in axis_of:
        by_first.setdefault(term[0], []).append(term)
    index = {k: tuple(sorted(v, key=len, reverse=True)) for k, v in by_first.items()}
    return IdentityLexicon(axis_of, index, display, f"HolisticBias {version} ({path})")
