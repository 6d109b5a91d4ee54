"""Report fragments for a red-team run: Markdown and an HTML `<section>` the run report can embed as is.

Every piece of text that came from data (prompts, answers, names, errors) is escaped: attack prompts are
adversarial by construction, and some are written to break out of exactly this kind of page.
"""

from __future__ import annotations

import html
import re

from safealign.redteam.metrics import group

EXAMPLE_PROMPT_CHARS = 300
EXAMPLE_RESPONSE_CHARS = 200
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
"""What could end a table cell, start emphasis, code or a link inside one; `<` `>` `&` are HTML-escaped first."""


def md(text: object) -> str:
    """Text safe inside a Markdown table cell: HTML-escaped, Markdown specials backslashed, one line."""
    s = html.escape(str(text), quote=False)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return re.sub(r"\s+", " ", s).strip()


def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(rate: dict | None) -> str:
    """`12.5% [4.1, 30.2] n=24` (+ errors), or `–` when nothing was measured."""
    if not rate or not rate.get("n"):
        return "–" if not rate or not rate.get("errors") else f"– ({rate['errors']} errors)"
    lo, hi = rate["ci95"]
    s = f"{100 * rate['rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] n={rate['n']}"
    return s + (f", {rate['errors']} errors" if rate.get("errors") else "")


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _cut(text: str | None, n: int) -> str:
    text = text or ""
    return text if len(text) <= n else text[:n] + "…"


Table = tuple[str, list[str], list[list[str]]]
"""(title, header, rows) of plain, unescaped strings."""


def _tables(metrics: dict, attempts: list[dict] | None, max_examples: int) -> list[Table]:
    """(title, header, rows) of plain strings: the content both renderers share."""
    asr, tp = metrics["asr"], metrics["throughput"]
    g = metrics["generation"]
    judge = metrics["judge"]
    sources = ", ".join(f"{k}: {v}" for k, v in metrics["seeds"]["by_source"].items())
    head = [
        ["target", metrics["target"]],
        ["seeds", f"{metrics['seeds']['n']} ({sources}); hash {metrics['seeds']['hash']}"],
        ["attack success rate (all attempts)", fmt(asr["overall"])],
        ["successes per 100 attempts", _num(tp["successes_per_100_attempts"], 1)],
        ["successes per CPU-minute", f"{_num(tp['successes_per_cpu_minute'])} "
                                     f"({tp['successes']} in {tp['cpu_minutes']:.1f} CPU-min, "
                                     f"{tp['wall_minutes']:.1f} wall-min)"],
        ["attempts / failed (errors) / not applicable",
         f"{tp['attempts']} / {tp['errors']} / {metrics['not_applicable']}"],
        ["judge", f"{judge['name']}: {judge['success_rule']}"],
        ["decoding", f"max_new_tokens={g['max_new_tokens']}, temperature={g['temperature']}, seed={g['seed']}, "
                     f"system prompt={'yes' if g.get('system_prompt') else 'none'}"],
    ]
    val = judge.get("validation") or {}
    if isinstance(val, dict) and val.get("accuracy") is not None:
        head.append(["judge validation (human labels)", ", ".join(
            f"{k}={val[k]:.3f}" for k in ("accuracy", "precision", "recall", "f1") if isinstance(val.get(k), float))])
    tables = [("Red-teaming summary", ["quantity", "value"], head)]

    cats = sorted({c for by_cat in asr["by_vector_category"].values() for c in by_cat})
    rows = [[v, *(fmt(asr["by_vector_category"][v].get(c)) for c in cats), fmt(asr["by_vector"][v])]
            for v in asr["by_vector"]]
    rows.append(["all vectors", *(fmt(asr["by_category"].get(c)) for c in cats), fmt(asr["overall"])])
    tables.append(("Attack success rate by attack vector × risk category (95% Wilson intervals)",
                   ["vector", *cats, "all categories"], rows))

    others = metrics.get("asr_other_judges") or {}
    if others:
        names = list(others)
        rows = [[v, fmt(asr["by_vector"][v]), *(fmt(others[j]["by_vector"].get(v)) for j in names)]
                for v in asr["by_vector"]]
        rows.append(["all vectors", fmt(asr["overall"]), *(fmt(others[j]["overall"]) for j in names)])
        tables.append(("Attack success rate by vector under each judge (same answers)",
                       ["vector", f"{judge['name']} (decides success)", *names], rows))

    attack_meta = {a["name"]: a for a in metrics["attacks"]}
    rows = []
    for name, rate in asr["by_attack"].items():
        meta = attack_meta.get(name, {"vector": "automated", "technique": "pair"})
        rows.append([name, meta["vector"], meta["technique"], fmt(rate)])
    tables.append(("Attack success rate by attack", ["attack", "vector", "technique", "ASR"], rows))

    pair = metrics.get("pair")
    if pair:
        src = pair["prompt_sources"]
        tables.append(("Automated attacker (PAIR)", ["quantity", "value"], [
            ["attacker", pair["attacker"]], ["rounds × seeds", f"{pair['rounds']} × {pair['seeds']}"],
            ["ASR", fmt(pair["asr"])], ["mean rounds to success", _num(pair["mean_rounds_to_success"], 1)],
            ["prompts written by the attacker / library fallback",
             f"{src['json'] + src['marker'] + src['raw']} / {src['fallback']} "
             f"(goal appended to {pair['anchored_prompts']})"],
        ]))

    fix = metrics.get("fix_rate")
    if fix:
        rows = [["all", str(fix["previous_successes"]), fmt(fix), str(fix["not_retested"])]]
        rows += [[v, str(r["n"] + r["errors"] + r["not_retested"]), fmt(r), str(r["not_retested"])]
                 for v, r in fix["by_vector"].items()]
        tables.append((f"Fix rate: previous successful attacks the model now withstands (previous: {fix['previous']}; "
                       f"{len(fix['regressions'])} new successes on attacks that failed before)",
                       ["vector", "previous successes", "fix rate", "not re-tested"], rows))

    exp = metrics.get("export")
    if exp:
        tables.append(("Successful attacks exported as adversarial seed prompts", ["quantity", "count"],
                       [[k.replace("_", " "), "–" if v is None else str(v)] for k, v in exp.items()]))

    if attempts and max_examples:
        wins = [a for a in attempts if a.get("success") and a["phase"] != "replay"]
        picked = [xs[0] for xs in group(wins, lambda a: a["vector"]).values()][:max_examples]
        rows = [[a["vector"], a["attack"], _cut(" ⏎ ".join(a["turns"]), EXAMPLE_PROMPT_CHARS),
                 _cut(a["response"], EXAMPLE_RESPONSE_CHARS)] for a in picked]
        if rows:
            tables.append(("Example successful attacks (one per vector, truncated)",
                           ["vector", "attack", "prompt (user turns)", "answer"], rows))
    return tables


def render_markdown(metrics: dict, attempts: list[dict] | None = None, max_examples: int = 5) -> str:
    out = ["## Red-teaming by attack vector", ""]
    for title, header, rows in _tables(metrics, attempts, max_examples):
        out += [f"### {md(title)}", "", "| " + " | ".join(md(c) for c in header) + " |",
                "|" + "---|" * len(header)]
        out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def render_html(metrics: dict, attempts: list[dict] | None = None, max_examples: int = 5) -> str:
    out = ['<section class="redteam">', "<h2>Red-teaming by attack vector</h2>"]
    for title, header, rows in _tables(metrics, attempts, max_examples):
        out.append(f"<h3>{h(title)}</h3>")
        out.append("<table><thead><tr>" + "".join(f"<th>{h(c)}</th>" for c in header) + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{h(c)}</td>" for c in row) + "</tr>" for row in rows]
        out.append("</tbody></table>")
    out.append("</section>")
    return "\n".join(out)
