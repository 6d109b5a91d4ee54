"""Safety SFT through TRL: completion-only loss, the safety mix, LoRA merged on export."""

from __future__ import annotations

import pytest
import torch

from safealign.data.records import Example
from safealign.models import load_model
from safealign.train.sft import (
    SFTStageConfig,
    completion_nll,
    mix_examples,
    opening_weights,
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
