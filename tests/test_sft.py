"""Safety SFT through TRL: completion-only loss, the safety mix, LoRA merged on export."""

from __future__ import annotations

import pytest
import torch

from safealign.data.records import Example
from safealign.models import load_model
from safealign.train.sft import (
    SFTStageConfig,
    completion_nll,
    decision_nll,
    first_answer_tokens,
    mix_examples,
    opening_weights,
    refusal_tokens,
    sft_config,
    to_prompt_completion,
    top_layers,
    train_sft,
)


def _examples(n: int = 8) -> list[Example]:
    out = []
    for i in range(n):
        out.append(Example(id=f"a{i}", kind="adversarial", prompt=f"how to rob bank {i}",
                           response="I can't help with that.", category="illicit_criminal", attack_vector="direct"))
        out.append(Example(id=f"b{i}", kind="benign", prompt=f"bread recipe {i}", response="Mix flour and water."))
    return out


def test_mix_keeps_all_benign_and_a_fraction_of_safety():
    ex = _examples(10)
    for frac, n_adv in [(0.0, 0), (0.3, 3), (1.0, 10)]:
        mixed = mix_examples(ex, frac)
        assert sum(e.is_safety for e in mixed) == n_adv and sum(not e.is_safety for e in mixed) == 10
    assert [e.id for e in mix_examples(ex, 0.5, seed=1)] == [e.id for e in mix_examples(ex, 0.5, seed=1)]
    with pytest.raises(ValueError):
        mix_examples(ex, 1.5)


def test_prompt_completion_records_and_cpu_config(tmp_path):
    rows = to_prompt_completion(_examples(1), system_prompt="Be safe.")
    assert rows[0]["prompt"][0] == {"role": "system", "content": "Be safe."}
    assert rows[0]["completion"] == [{"role": "assistant", "content": "I can't help with that."}]
    args = sft_config(SFTStageConfig(device="cpu"), tmp_path, 16)
    # the CPU trap: TRL defaults to bf16 + gradient checkpointing, ~18x slower on these CPUs
    assert not args.bf16 and not args.gradient_checkpointing and args.completion_only_loss


@pytest.mark.parametrize("peft", [False, True])
def test_completion_nll_equals_the_full_logits_loss_and_its_gradient(tiny_model, peft):
    """Our CPU loss projects only label positions through the LM head; loss and gradients must equal the
    textbook loss over full logits (transformers' own `labels=` loss, mean over label positions)."""

    model, _ = tiny_model
    if peft:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 task_type="CAUSAL_LM", init_lora_weights=False))
    torch.manual_seed(0)
    ids = torch.randint(3, 60, (3, 9))
    attention = torch.ones_like(ids)
    attention[2, 6:] = 0  # right padding
    labels = ids.clone()
    labels[:, :4] = -100  # prompt
    labels[attention == 0] = -100
    inputs = {"input_ids": ids, "attention_mask": attention, "labels": labels}
    params = [p for p in model.parameters() if p.requires_grad]

    ours, top1 = completion_nll(model, inputs)
    g_ours = torch.autograd.grad(ours, params)
    reference = model(**inputs).loss
    g_ref = torch.autograd.grad(reference, params)
    n_label = int((labels[:, 1:] != -100).sum())
    assert torch.allclose(ours, reference, atol=1e-6) and top1.shape == (n_label,)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_ours, g_ref))
    # with gradient accumulation TRL and transformers divide the summed NLL by the tokens of all micro-batches
    summed, _ = completion_nll(model, inputs, num_items_in_batch=2 * n_label)
    assert torch.allclose(summed, reference / 2, atol=1e-6)


def test_opening_weights_mark_the_first_answer_tokens_of_each_row():

    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    w = opening_weights(mask, opening_tokens=2, opening_weight=5.0)
    # row 0: 4 answer tokens → 5 5 1 1; row 1: 2 → 5 5; row 2: 1 → 5
    assert w.tolist() == [5.0, 5.0, 1.0, 1.0, 5.0, 5.0, 5.0]


def test_completion_nll_weights_the_opening_tokens_by_hand(tiny_model):
    """Weighted loss = (w·NLL of the first k answer tokens + NLL of the rest) / number of answer tokens."""

    model, _ = tiny_model
    torch.manual_seed(1)
    ids = torch.randint(3, 60, (2, 8))
    labels = ids.clone()
    labels[:, :3] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        logp = model(input_ids=ids).logits[:, :-1].float().log_softmax(-1)
    nll = -logp.gather(-1, ids[:, 1:, None])[..., 0][:, 2:]  # answer tokens: positions 3..7, predicted from 2..6
    by_hand = (3.0 * nll[:, :2].sum() + nll[:, 2:].sum()) / nll.numel()
    with torch.no_grad():
        ours, _ = completion_nll(model, inputs, opening_tokens=2, opening_weight=3.0)
        plain, _ = completion_nll(model, inputs)
    assert torch.allclose(ours, by_hand, atol=1e-5) and torch.allclose(plain, nll.mean(), atol=1e-5)


@pytest.mark.parametrize("lora", [True, False])
def test_sft_learns_and_exports_a_plain_model(tiny_model, tmp_path, lora):
    model, tok = tiny_model
    cfg = SFTStageConfig(lora=lora, epochs=6, batch_size=8, learning_rate=3e-2 if lora else 1e-2,
                         logging_steps=1, device="cpu")
    metrics = train_sft("unused", _examples(), tmp_path / "out", cfg, model=model, tokenizer=tok)
    # a 2-layer, 32-wide random model with a tied head moves slowly under LoRA; full FT memorises
    drop = 0.1 if lora else 0.3 * metrics["first_logged_loss"]
    assert metrics["last_logged_loss"] < metrics["first_logged_loss"] - drop
    exported, _ = load_model(str(tmp_path / "out"))
    assert not any("lora" in n for n, _ in exported.named_parameters())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_lora_on_the_top_layers_leaves_the_lower_layers_untouched(tiny_model, tmp_path):
    model, tok = tiny_model
    assert top_layers(model, None) is None and top_layers(model, 1) == [1]
    with pytest.raises(ValueError, match="lora_layers must be between 1 and 2"):
        top_layers(model, 3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = SFTStageConfig(lora=True, lora_layers=1, epochs=2, batch_size=8, learning_rate=3e-2, device="cpu")
    train_sft("unused", _examples(), tmp_path / "out", cfg, model=model, tokenizer=tok)
    exported, _ = load_model(str(tmp_path / "out"))
    after = dict(exported.named_parameters())
    moved = {n for n in before if "layers." in n and not torch.equal(before[n], after[n])}
    assert moved and all(n.startswith("model.layers.1.") for n in moved)


def test_refusal_tokens_are_the_openings_adversarial_demonstrations_own():
    # token 7 opens 3 of 4 declines and no benign answer; 9 opens one decline and two benign answers;
    # None (a row truncated before its answer) has no vote
    firsts = [7, 7, 7, 9, 9, 9, 11, None, 5]
    safety = [True, True, True, True, False, False, False, True, False]
    assert refusal_tokens(firsts, safety) == [7]
    # 5 opens one decline in four, 25%: kept at min_share 0.25, dropped at 0.3
    assert refusal_tokens([7, 7, 7, 5], [True, True, True, True], min_share=0.25) == [5, 7]
    assert refusal_tokens([7, 7, 7, 5], [True, True, True, True], min_share=0.3) == [7]
    with pytest.raises(ValueError, match="2 first tokens for 1 examples"):
        refusal_tokens([1, 2], [True])


def test_decision_nll_is_the_nll_of_the_own_class_mass_by_hand():
    # probabilities 0.2, 0.6, 0.2 over a 3-token vocabulary; token 1 opens declines
    logits = torch.log(torch.tensor([[1.0, 3.0, 1.0]] * 3))
    loss = decision_nll(logits, torch.tensor([1, 0, 2]), torch.tensor([1]))
    # decline row: the decline mass 0.6; answer rows: the answer mass 0.4, whichever answer token they open with
    assert torch.allclose(loss, -torch.log(torch.tensor([0.6, 0.4, 0.4])), atol=1e-6)
    # two decline tokens pool their mass: 0.8 for a decline row, 0.2 for an answer row
    pooled = decision_nll(logits[:2], torch.tensor([0, 2]), torch.tensor([0, 1]))
    assert torch.allclose(pooled, -torch.log(torch.tensor([0.8, 0.2])), atol=1e-6)


def test_completion_nll_adds_the_decision_loss_at_each_rows_first_answer_token(tiny_model):
    model, _ = tiny_model
    torch.manual_seed(2)
    ids = torch.randint(3, 60, (2, 8))
    labels = ids.clone()
    labels[0, :3] = -100
    labels[1, :5] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    declines = torch.tensor([int(ids[0, 3]), 4])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
        plain, _ = completion_nll(model, inputs)
        ours, _ = completion_nll(model, inputs, decision_weight=2.0, refusal_ids=declines)
    # first answer tokens: row 0 at position 3 (predicted from 2), row 1 at 5 (from 4)
    first = decision_nll(torch.stack([logits[0, 2], logits[1, 4]]), torch.stack([ids[0, 3], ids[1, 5]]), declines)
    n_label = int((labels[:, 1:] != -100).sum())
    assert torch.allclose(ours, plain + 2.0 * first.sum() / n_label, atol=1e-5)


def test_sft_with_the_decision_loss_reads_decline_tokens_off_the_data(tiny_model, tmp_path):
    model, tok = tiny_model
    cfg = SFTStageConfig(lora=False, epochs=2, batch_size=8, learning_rate=1e-2, decision_weight=5.0, device="cpu")
    metrics = train_sft("unused", _examples(), tmp_path / "out", cfg, model=model, tokenizer=tok)
    assert first_answer_tokens({"labels": [[-100, -100, 3, 4], [-100, 8], [-100, -100]]}) == [3, 8, None]
    # every decline opens "I can't", every benign answer "Mix": one decline token, the opening of "I can't"
    (decline,) = metrics["refusal_tokens"]
    assert "I can't help with that.".startswith(tok.decode([decline]).strip())
    assert not "Mix flour and water.".startswith(tok.decode([decline]).strip())
