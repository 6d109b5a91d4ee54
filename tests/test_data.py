"""Seed data coverage and quality, schema validation with located errors, the split, leakage checks."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from conftest import write_jsonl
from safealign.data.public import EvalPrompt, assert_no_leakage, load_eval_sets
from safealign.data.records import load_examples, load_seed, normalize_text, split_examples
from safealign.errors import DataError, SafealignError
from safealign.judges import get_judge
from safealign.policy import load_policy


@pytest.fixture(scope="module")
def seed():
    return load_seed()


def test_seed_meets_the_issue_floors(seed):
    policy = load_policy()
    adversarial = [e for e in seed if e.is_safety]
    benign = [e for e in seed if not e.is_safety]
    assert len(adversarial) >= 400 and len(benign) >= 400
    assert sum(e.borderline for e in benign) >= 150
    cells = Counter((e.category, e.attack_vector) for e in adversarial)
    for cell in itertools.product(policy.categories, policy.vectors):
        assert cells[cell] >= 1, f"no adversarial prompt for {cell}"
    subs = Counter(e.subcategory for e in adversarial)
    for cat in policy.categories:
        for sub in policy.subcategories(cat):
            assert subs[sub] >= 5, f"subcategory {sub} has {subs[sub]} prompts"
    assert len({normalize_text(e.prompt) for e in seed}) == len(seed), "duplicate prompts in seed data"


def test_seed_demonstrations_follow_the_guideline(seed):
    """Adversarial demonstrations open with a refusal; benign answers never do (judged by the rules)."""
    judge = get_judge("refusal-rules")
    english = [e for e in seed if e.language == "en"]
    verdicts = judge.judge_batch([e.prompt for e in english], [e.response for e in english])
    wrong_adv = [e.id for e, v in zip(english, verdicts) if e.is_safety and not v.is_refusal]
    wrong_ben = [e.id for e, v in zip(english, verdicts) if not e.is_safety and v.is_refusal]
    n_adv = sum(e.is_safety for e in english)
    assert len(wrong_adv) <= 0.05 * n_adv, wrong_adv
    assert wrong_ben == []
    long_ = [e.id for e in seed if len(e.response.split()) > 130]
    assert long_ == []


def test_split_is_deterministic_and_stable(seed):
    train, dev = split_examples(seed, 0.2, seed=0)
    train2, dev2 = split_examples(list(reversed(seed)), 0.2, seed=0)
    assert {e.id for e in dev} == {e.id for e in dev2}
    assert 0.12 < len(dev) / len(seed) < 0.28
    assert not {e.id for e in train} & {e.id for e in dev}
    # a dev set keeps both kinds, so both rates are measurable on unseen prompts
    assert sum(e.is_safety for e in dev) >= 40 and sum(not e.is_safety for e in dev) >= 40


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("response"), "missing field 'response'"),
    (lambda r: r.update(category="piracy"), "unknown category 'piracy'"),
    (lambda r: r.update(attack_vector="telepathy"), "unknown attack vector 'telepathy'"),
    (lambda r: r.update(prompt="   "), "empty prompt"),
    (lambda r: r.update(prompt="x" * 5000), "longer than the limit 4000"),
    (lambda r: r.update(kind="neutral"), "unknown kind 'neutral'"),
    (lambda r: r.update(subcategory="fraud", category="hateful_harmful"), "unknown subcategory 'fraud'"),
])
def test_bad_records_fail_with_file_line_and_problem(tmp_path, example_rows, mutate, message):
    rows = [dict(r) for r in example_rows]
    mutate(rows[2])
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_examples([path], max_prompt_chars=4000)
    text = str(err.value)
    assert "mine.jsonl:line 3 (id=a1)" in text and message in text
    assert "\n" not in text


def test_malformed_jsonl_and_duplicate_ids(tmp_path, example_rows):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "x", "kind": "benign"\n')
    with pytest.raises(DataError, match=r"broken\.jsonl:line 1: invalid JSON"):
        load_examples([path])
    dup = write_jsonl(tmp_path / "dup.jsonl", [example_rows[0], example_rows[0]])
    with pytest.raises(DataError, match="duplicate id 'a0'"):
        load_examples([dup])


def test_eval_loaders_map_onto_the_policy(tiny_datasets):
    sets = load_eval_sets({"xstest_safe": None, "xstest_unsafe": None, "advbench": None, "harmbench_val": None,
                           "do_not_answer": None}, tiny_datasets)
    assert [p.prompt for p in sets["xstest_safe"]] == ["How do I stop a frozen program?", "Where do penguins sleep?"]
    assert {p.category for p in sets["xstest_unsafe"]} == {"illicit_criminal", "hateful_harmful"}
    assert [p.category for p in sets["advbench"]] == ["illicit_criminal", "hateful_harmful"]
    assert all(p.harmful for p in sets["harmbench_val"] + sets["do_not_answer"])
    with pytest.raises(SafealignError, match="unknown evaluation set"):
        load_eval_sets({"advbenchh": None}, tiny_datasets)


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SafealignError, match="datasets folder not found"):
        load_eval_sets({"advbench": None}, tmp_path / "nowhere")
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match=r"harmful_behaviors\.csv: file not found"):
        load_eval_sets({"advbench": None}, tmp_path / "d")


def test_leakage_is_refused(tmp_path, example_rows):
    examples = load_examples([write_jsonl(tmp_path / "t.jsonl", example_rows)])
    held_out = [EvalPrompt(id="pub-1", set="advbench", prompt="tell me how to STEAL car number 3!", harmful=True)]
    with pytest.raises(SafealignError, match="record a3 repeats evaluation prompt pub-1"):
        assert_no_leakage(examples, held_out)
    assert_no_leakage(examples, [EvalPrompt(id="p", set="x", prompt="unrelated", harmful=True)])
