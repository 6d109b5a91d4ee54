"""A synthetic corpus whose audit counts are known exactly: for tests, benchmarks and a self-check.

Documents are neutral filler sentences (no pronoun, no identity descriptor: checked when this module loads)
with planted parts: pronoun sentences (one pronoun each), identity sentences (one descriptor each, including
multi-word, hyphenated and deduplicated ones and the stop-terms that must not count), personal-information
items of every type with their character offsets, and "hard negative" sentences (years, prices, versions,
ISBNs, coordinates, place names) for measuring false positives on clean text. All generated from a seed;
nothing is copied from any dataset.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from safealign.audit.pii import luhn_ok
from safealign.audit.representation import PRONOUNS, tokenize

FILLER = [
    "The committee approved the budget for the new library.",
    "Rain is expected across the valley on Tuesday.",
    "The museum will extend opening hours during the summer.",
    "A new bus route connects the station with the harbour.",
    "Fresh bread is sold at the market every morning.",
    "The river rose after three days of heavy rain.",
    "Engineers tested the bridge before the opening ceremony.",
    "The recipe calls for flour, butter and a pinch of salt.",
    "Students gathered in the hall for the science fair.",
    "The old mill was turned into a small theatre.",
    "Volunteers planted trees along the northern trail.",
    "The report compares energy use across several regions.",
    "Traffic slowed near the tunnel because of roadworks.",
    "The orchestra rehearsed the second movement twice.",
    "Local farmers expect a good harvest this year.",
    "The software update improves battery life on older devices.",
    "A quiet street leads down to the lake.",
    "The bakery on the corner closes early on Sundays.",
    "Researchers measured air quality at twelve sites.",
    "The garden is best visited in late spring.",
]

PRONOUN_SENTENCES = {  # one pronoun token each
    "she": ["She repaired the fence.", "The award went to her.", "The red bicycle is hers.", "She painted the door."],
    "he": ["He repaired the fence.", "The award went to him.", "The map was in his bag.", "He painted the door."],
    "they": [
        "They repaired the fence.",
        "The award went to them.",
        "The map was in their bag.",
        "They painted the door.",
    ],
    "i": ["I repaired the fence.", "The award went to me.", "The map was in my bag.", "We painted the door."],
    "you": ["You repaired the fence.", "The award went to you.", "The map was in your bag.", "You painted the door."],
    "it": ["It rained all night.", "The dog wagged its tail.", "The machine cleaned itself."],
}
# The Table 9a groups each planted pronoun puts its document in.
PRONOUN_GROUPS = {
    "she": {"she", "3rd", "gendered", "any"},
    "he": {"he", "3rd", "gendered", "any"},
    "they": {"unspecified", "3rd", "gendered", "any"},
    "i": {"1st", "any"},
    "you": {"2nd", "any"},
    "it": {"3rd", "any"},
}

# (surface form as written, axis, counted term) — None axis: must not be counted.
IDENTITY_PLANTS = [
    ("female", "gender_and_sex", "female"),
    ("Transgender", "gender_and_sex", "transgender"),
    ("Non-Binary", "gender_and_sex", "non-binary"),
    ("gay", "sexual_orientation", "gay"),
    ("queer", "sexual_orientation", "queer"),  # listed under both axes: counted once, as sexual orientation
    ("LGBTQ+", "sexual_orientation", "lgbtq+"),
    ("LGBT", "sexual_orientation", "lgbt"),
    ("Mexican American", "nationality", "mexican-american"),  # a space matches the listed hyphen
    ("Korean", "nationality", "korean"),
    ("American", "nationality", "american"),
    ("Latin American", "race_ethnicity", "latin american"),  # longest match: not latin + american
    ("Pacific Islander", "race_ethnicity", "pacific islander"),
    ("Asian", "race_ethnicity", "asian"),
    ("Roman Catholic", "religion", "roman catholic"),  # not also catholic
    ("Jehovah’s Witness", "religion", "jehovah's witness"),  # a curly apostrophe matches too
    ("Buddhist", "religion", "buddhist"),
    ("straight", None, None),  # removed stop-terms
    ("white", None, None),
    ("black", None, None),
]
IDENTITY_TEMPLATES = [
    "The {} club met on Thursday evening.",
    "A {} choir performed at the festival.",
    "The survey included {} respondents from the region.",
]

PII_TEMPLATES = [
    "Contact {} for details.",
    "The form lists {} as the main entry.",
    "Records show {} on file.",
    "Send the package to {} by Monday.",
    "The old directory printed {} in bold.",
]

HARD_NEGATIVES = [
    lambda r: f"The bridge opened in {r.randint(1890, 2024)} after {r.randint(2, 40)} years of work.",
    lambda r: (
        f"Tickets cost ${r.randint(5, 300)}.{r.randint(0, 99):02d} and the show starts at {r.randint(1, 12)}:{r.randint(0, 59):02d}."
    ),
    lambda r: f"Version {r.randint(0, 9)}.{r.randint(0, 20)}.{r.randint(0, 30)} fixed {r.randint(2, 90)} bugs.",
    lambda r: (
        f"The meeting on {r.randint(2000, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} lasted {r.randint(10, 180)} minutes."
    ),
    lambda r: (
        f"ISBN 978-{r.randint(0, 9)}-{r.randint(100, 999)}-{r.randint(10000, 99999)}-{r.randint(0, 9)} is out of print."
    ),
    lambda r: f"The score was {r.randint(0, 9)}-{r.randint(0, 9)} at halftime.",
    lambda r: f"Coordinates {r.uniform(-80, 80):.4f}, {r.uniform(-170, 170):.4f} mark the trailhead.",
    lambda r: f"Room {r.randint(1, 999)} is on floor {r.randint(1, 30)} of building {r.choice('ABCDEFG')}.",
    lambda r: f"Sales rose to {r.randint(1, 999)},{r.randint(0, 999):03d},{r.randint(0, 999):03d} units.",
    lambda r: f"Between {r.randint(1950, 1990)}-{r.randint(1991, 2020)} the population grew {r.randint(1, 60)}%.",
    lambda r: (
        f"Flight {r.choice(['BA', 'LH', 'AF', 'UA'])} {r.randint(100, 9999)} departs from gate {r.choice('ABCD')}{r.randint(1, 40)}."
    ),
    lambda r: (
        f"Temperatures reached {r.randint(20, 45)} degrees near {r.choice(['Virginia Beach', 'Grant Park', 'Santa Monica', 'Lake Tahoe', 'San Francisco', 'New York', 'Mount Rainier'])}."
    ),
    lambda r: f"The service listens on port {r.randint(1024, 65535)} with a timeout of {r.randint(1, 120)} seconds.",
    lambda r: f"Reference {r.randint(10**11, 10**12 - 1)} was archived.",
    lambda r: f"Batch {''.join(r.choice('0123456789') for _ in range(16))} passed inspection.",
    lambda r: f"The ratio was {r.randint(1, 9)}:{r.randint(1, 9)} and the dose was {r.randint(1, 500)} mg.",
    lambda r: (
        f"Call the front desk or visit {r.choice(['the help centre', 'room 12', 'the lobby'])} for more information."
    ),
    lambda r: (
        f"The recipe serves {r.randint(2, 12)} and bakes at {r.randint(150, 250)} degrees for {r.randint(10, 90)} minutes."
    ),
]

_FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Daniel",
    "Karen",
]
_LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Harris",
]
_STREETS = ["Oak", "Maple", "Cedar", "Elm", "Pine", "Washington", "Baker", "Hillcrest", "Sunset", "Willow Creek"]
_SUFFIXES = ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Drive", "Boulevard", "Court", "Place"]
_CITIES = [("Springfield", "IL"), ("Columbus", "OH"), ("Portland", "OR"), ("Austin", "TX")]
_DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "uni.example.edu"]


def _card(r: random.Random) -> str:
    prefix, length = r.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)])
    body = prefix + "".join(str(r.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    digits = next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))
    groups = [digits[:4], digits[4:10], digits[10:]] if length == 15 else [digits[i : i + 4] for i in range(0, 16, 4)]
    return r.choice([" ", "-", ""]).join(groups)


def _iban(r: random.Random) -> str:
    country, bban = r.choice(
        [
            ("DE", "".join(str(r.randint(0, 9)) for _ in range(18))),
            (
                "GB",
                "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
                + "".join(str(r.randint(0, 9)) for _ in range(14)),
            ),
            ("FR", "".join(str(r.randint(0, 9)) for _ in range(23))),
        ]
    )
    numeric = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    iban = f"{country}{98 - numeric % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if r.random() < 0.5 else iban


def _nino(r: random.Random) -> str:
    while True:
        a, b = r.choice("ABCEGHJKLMNOPRSTWXYZ"), r.choice("ABCEGHJKLMNPRSTWXYZ")
        # HE / ME would add the pronouns "he" / "me" to a document when written with spaces.
        if a + b not in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ", "HE", "ME"):
            break
    d = [f"{r.randint(0, 99):02d}" for _ in range(3)]
    return (
        f"{a}{b} {d[0]} {d[1]} {d[2]} {r.choice('ABCD')}"
        if r.random() < 0.5
        else f"{a}{b}{''.join(d)}{r.choice('ABCD')}"
    )


def _phone(r: random.Random) -> tuple[str, str]:
    a, e, n = r.randint(201, 989), r.randint(200, 999), r.randint(0, 9999)
    return r.choice(
        [
            ("{}", f"({a}) {e}-{n:04d}"),
            ("{}", f"{a}-{e}-{n:04d}"),
            ("{}", f"{a}.{e}.{n:04d}"),
            ("{}", f"1-{a}-{e}-{n:04d}"),
            ("{}", f"({a}){e}-{n:04d}"),
            ("{}", f"+1 {a} {e} {n:04d}"),
            ("{}", f"+44 20 {r.randint(7000, 8999)} {n:04d}"),
            ("{}", f"+49 30 {r.randint(100000, 999999)}"),
            ("{}", f"+33 1 {r.randint(10, 99)} {r.randint(10, 99)} {r.randint(10, 99)} {r.randint(10, 99)}"),
            ("Phone: {}", f"020 {r.randint(7000, 8999)} {n:04d}"),
            ("Tel. {}", f"{e}-{n:04d}"),
        ]
    )


def pii_item(kind: str, r: random.Random, person_gazetteer: bool = True) -> tuple[str, str]:
    """(frame, item): the item is what must be found; the frame ("{}" or "Phone: {}") is context around it."""
    if kind == "email":
        first, last = r.choice(_FIRST), r.choice(_LAST)
        return "{}", r.choice(
            [
                f"{first.lower()}.{last.lower()}{r.randint(1, 99)}@{r.choice(_DOMAINS)}",
                f"{first[0].lower()}{last.lower()}+news@{r.choice(_DOMAINS)}",
                f"{first.upper()}_{last.upper()}@{r.choice(_DOMAINS).upper()}",
            ]
        )
    if kind == "phone":
        return _phone(r)
    if kind == "street_address":
        direction = r.choice(["", "", "", "W. ", "North "])
        addr = f"{r.randint(1, 9999)} {direction}{r.choice(_STREETS)} {r.choice(_SUFFIXES)}"
        if r.random() < 0.3:
            addr += f", Apt {r.randint(1, 40)}{r.choice('ABC')}"
        if r.random() < 0.4:
            city, st = r.choice(_CITIES)
            addr += f", {city}, {st} {r.randint(10000, 99999)}"
        return "{}", addr
    if kind == "credit_card":
        return "{}", _card(r)
    if kind == "us_ssn":
        area = r.choice([x for x in range(1, 900) if x != 666])
        return "{}", f"{area:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"
    if kind == "uk_nino":
        return "{}", _nino(r)
    if kind == "iban":
        return "{}", _iban(r)
    if kind == "ip_address":
        if r.random() < 0.75:
            return (
                "{}",
                f"{r.choice([203, 198, 192, 10, 172])}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
            )
        if r.random() < 0.5:
            return "{}", f"2001:db8:{r.randint(0, 0xFFFF):x}::{r.randint(1, 0xFFFF):x}"
        return "{}", ":".join(f"{r.randint(0, 0xFFFF):x}" for _ in range(8))
    if kind == "person_name":
        first, last = r.choice(_FIRST), r.choice(_LAST)
        styles = ["Dr. {} {}", "Mr. {} {}", "Ms. {} {}"] + (["{} {}", "{} {}", "{} {}"] if person_gazetteer else [])
        return "{}", r.choice(styles).format(first, last)
    raise ValueError(kind)


@dataclass
class SyntheticCorpus:
    records: list[dict]
    pronouns: dict[str, int] = field(default_factory=dict)  # group -> documents
    identity: dict[str, dict] = field(default_factory=dict)  # axis -> {"documents": n, "terms": {term: n}}
    planted: list[list[tuple[str, int, int]]] = field(default_factory=list)  # per doc: (type, start, end)
    clean: list[bool] = field(default_factory=list)  # per doc: no PII planted
    sources: dict[str, int] = field(default_factory=dict)

    def pii_items(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for doc in self.planted:
            for t, _, _ in doc:
                out[t] = out.get(t, 0) + 1
        return out


def make_corpus(
    n_docs: int,
    seed: int = 0,
    pii_rate: float = 0.3,
    pronoun_rate: float = 0.6,
    identity_rate: float = 0.3,
    hard_negative_rate: float = 0.5,
    sources: tuple[str, ...] = ("web", "books", "forum"),
    person_gazetteer: bool | None = None,
) -> SyntheticCorpus:
    """`n_docs` records {"text", "source"} with the counts an exact audit must find.

    `person_gazetteer`: also plant bare "First Last" names (not only "Dr. First Last"); None = when the
    census name lists are installed, since without them only honorific forms can be found.
    """
    from safealign.audit.config import PII_TYPES
    from safealign.audit.pii import person_name_backend

    if person_gazetteer is None:
        person_gazetteer = person_name_backend() != "honorifics-only"

    r = random.Random(seed)
    corpus = SyntheticCorpus([])
    for _ in range(n_docs):
        parts: list[str] = [r.choice(FILLER)]
        planted: list[tuple[str, int, int]] = []
        groups: set[str] = set()
        terms: dict[str, set[str]] = {}
        if r.random() < pronoun_rate:
            for key in r.sample(sorted(PRONOUN_SENTENCES), r.randint(1, 3)):
                parts.append(r.choice(PRONOUN_SENTENCES[key]))
                groups |= PRONOUN_GROUPS[key]
        if r.random() < identity_rate:
            for surface, axis, term in r.sample(IDENTITY_PLANTS, r.randint(1, 2)):
                parts.append(r.choice(IDENTITY_TEMPLATES).format(surface))
                if axis:
                    terms.setdefault(axis, set()).add(term)
        if r.random() < hard_negative_rate:
            parts.append(r.choice(HARD_NEGATIVES)(r))
        pii_parts = []
        if r.random() < pii_rate:
            for kind in r.sample(PII_TYPES, r.randint(1, 2)):
                frame, item = pii_item(kind, r, person_gazetteer)
                pii_parts.append((kind, r.choice(PII_TEMPLATES).format(frame.format("\x00")), item))
        parts.append(r.choice(FILLER))
        r.shuffle(parts)
        text = " ".join(parts)
        for kind, template, item in pii_parts:  # append PII sentences, recording where each item lands
            before, after = template.split("\x00")
            start = len(text) + 1 + len(before)
            text = f"{text} {before}{item}{after}"
            planted.append((kind, start, start + len(item)))
        source = r.choice(sources)
        corpus.records.append({"text": text, "source": source})
        corpus.planted.append(planted)
        corpus.clean.append(not planted)
        corpus.sources[source] = corpus.sources.get(source, 0) + 1
        for g in groups:
            corpus.pronouns[g] = corpus.pronouns.get(g, 0) + 1
        for axis, ts in terms.items():
            a = corpus.identity.setdefault(axis, {"documents": 0, "terms": {}})
            a["documents"] += 1
            for t in ts:
                a["terms"][t] = a["terms"].get(t, 0) + 1
    return corpus


def _check_pools() -> None:
    """The neutral text must hold no pronoun and no identity word, or the known counts would be wrong."""
    pronouns = set().union(*PRONOUNS.values())
    identity_words = {
        "female",
        "transgender",
        "non",
        "binary",
        "gay",
        "queer",
        "lgbtq+",
        "lgbt",
        "mexican",
        "american",
        "korean",
        "latin",
        "pacific",
        "islander",
        "asian",
        "roman",
        "catholic",
        "jehovah",
        "witness",
        "buddhist",
        "straight",
        "white",
        "black",
    }
    neutral = FILLER + IDENTITY_TEMPLATES + PII_TEMPLATES
    for s in neutral:
        bad = (set(tokenize(s)) & pronouns) | (set(tokenize(s)) & identity_words)
        assert not bad, f"synthetic filler {s!r} contains {bad}"


_check_pools()
