"""Our LoRA and VeRA written in PEFT's layout load in PEFT with equal outputs, and PEFT's load into ours."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from giva import apply_adapter, load_adapter, make_config, save_adapter

peft = pytest.importorskip("peft")
pytestmark = [pytest.mark.usefixtures("single_thread"),
              pytest.mark.filterwarnings("ignore:fan_in_fan_out is set to"),
              pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")]

# (model fixture, batch fixture, method, options): MiniLM with a trained head; VeRA with the pair saved or
# regenerated from the seed; GPT-2's Conv1D layers (fan_in_fan_out).
CASES = {
    "lora minilm + head": ("minilm", "minilm_batches", "lora", dict(r=4, alpha=8, trainable_modules=["classifier"])),
    "lora rslora gpt2": ("tiny_gpt2", "lm_batches", "lora", dict(r=4, alpha=16, use_rslora=True)),
    "vera minilm + head": ("minilm", "minilm_batches", "vera", dict(r=16, trainable_modules=["classifier"])),
    "vera regenerated gpt2": ("tiny_gpt2", "lm_batches", "vera", dict(r=8, save_projection=False, projection_seed=3)),
}
TOLERANCE = dict(atol=1e-6, rtol=1e-6)  # fp32


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.fixture(params=list(CASES))
def case(request):
    model_name, batches_name, method, options = CASES[request.param]
    model = request.getfixturevalue(model_name)
    return model, request.getfixturevalue(batches_name)[0], method, options


def test_ours_saved_in_peft_layout_loads_in_peft_with_equal_outputs(case, perturb, tmp_path):
    model, batch, method, options = case
    base = copy.deepcopy(model)
    apply_adapter(model, make_config(method, **options))
    perturb(model)  # non-zero deltas and a changed head
    ours = logits(model, batch)
    assert not torch.allclose(ours, logits(base, batch), atol=1e-3)
    save_adapter(model, str(tmp_path), format="peft")
    written = json.loads((tmp_path / "adapter_config.json").read_text())
    assert written["peft_type"] == method.upper() and written["peft_version"] == peft.__version__

    theirs = peft.PeftModel.from_pretrained(base, str(tmp_path)).eval()
    torch.testing.assert_close(logits(theirs, batch), ours, **TOLERANCE)


def test_peft_checkpoints_load_into_ours_with_equal_outputs(case, perturb, tmp_path):
    model, batch, method, options = case
    base = copy.deepcopy(model)
    peft_options = dict(r=options["r"], target_modules=None, modules_to_save=options.get("trainable_modules"))
    if method == "lora":
        config = peft.LoraConfig(lora_alpha=options["alpha"], use_rslora=options.get("use_rslora", False), **peft_options)
    else:
        config = peft.VeraConfig(save_projection=options.get("save_projection", True),
                                 projection_prng_key=options.get("projection_seed", 0), **peft_options)
    config.target_modules = ["query", "value", "intermediate.dense"] if "classifier" in str(options) else ["c_attn", "c_fc"]
    theirs = peft.get_peft_model(model, config).eval()
    perturb(theirs)
    expected = logits(theirs, batch)
    theirs.save_pretrained(str(tmp_path))

    ours = load_adapter(base, str(tmp_path))
    assert ours.giva_adapter.config.method == method
    assert set(ours.giva_adapter.layers) == {n.removeprefix("base_model.model.") for n, m in theirs.named_modules()
                                              if hasattr(m, "lora_A" if method == "lora" else "vera_lambda_b")}
    torch.testing.assert_close(logits(ours, batch), expected, **TOLERANCE)


def test_what_has_no_peft_form_is_refused(minilm, minilm_batches, tmp_path):
    apply_adapter(minilm, make_config("giva", r=2), data=minilm_batches)
    with pytest.raises(ValueError, match="giva has no PEFT type .* save it in our format"):
        save_adapter(minilm, str(tmp_path / "giva"), format="peft")
    with pytest.raises(ValueError, match="unknown checkpoint format 'pef'"):
        save_adapter(minilm, str(tmp_path / "giva"), format="pef")


def test_a_peft_checkpoint_ours_cannot_represent_is_refused(minilm, tmp_path):
    base = copy.deepcopy(minilm)
    dora = peft.get_peft_model(minilm, peft.LoraConfig(r=2, target_modules=["query"], use_dora=True))
    dora.save_pretrained(str(tmp_path / "dora"))
    with pytest.raises(ValueError, match="uses use_dora, which our lora does not implement"):
        load_adapter(copy.deepcopy(base), str(tmp_path / "dora"))
    ia3 = peft.get_peft_model(copy.deepcopy(base), peft.IA3Config(target_modules=["query"], feedforward_modules=[]))
    ia3.save_pretrained(str(tmp_path / "ia3"))
    with pytest.raises(ValueError, match="holds a PEFT IA3 adapter; only LORA and VERA"):
        load_adapter(base, str(tmp_path / "ia3"))
    assert not hasattr(base, "giva_adapter")
