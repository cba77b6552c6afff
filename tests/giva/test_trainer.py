"""Our adapters in the transformers Trainer: only the adapter and the head train, checkpoints hold the adapter
only, and training resumes from one to the same weights as an uninterrupted run."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from giva import apply_adapter, load_adapter, make_config

pytest.importorskip("accelerate")
from transformers import TrainingArguments  # noqa: E402

from giva.trainer import AdapterTrainer  # noqa: E402

pytestmark = [pytest.mark.usefixtures("single_thread"),
              pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")]

CONFIGS = {"lora": dict(r=4), "vera": dict(r=16), "giva": dict(r=4)}
STEPS, SAVE_EVERY, BATCH = 4, 2, 4


def examples(n: int = STEPS * BATCH, seq: int = 16) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 29000, (n, seq), generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(seq, dtype=torch.long), "labels": labels[i]}
            for i in range(n)]


def adapted(model, method: str):
    data = [{k: torch.stack([e[k] for e in examples()[:BATCH]]) for k in ("input_ids", "attention_mask", "labels")}]
    torch.manual_seed(0)  # LoRA's A: the same start whatever ran before
    return apply_adapter(model, make_config(method, trainable_modules=["classifier"], **CONFIGS[method]), data=data)


def trainer_for(model, out_dir, eval_dataset=None, **overrides) -> AdapterTrainer:
    args = TrainingArguments(str(out_dir), max_steps=STEPS, save_steps=SAVE_EVERY, per_device_train_batch_size=BATCH,
                             learning_rate=1e-2, lr_scheduler_type="constant", report_to=[], use_cpu=True, seed=0,
                             logging_steps=STEPS, dataloader_num_workers=0, **overrides)
    return AdapterTrainer(model=model, args=args, train_dataset=examples(), eval_dataset=eval_dataset)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_trainer_trains_only_the_adapter_and_head_saves_adapter_only_checkpoints_and_resumes(method, minilm, snapshot,
                                                                                           tmp_path):
    base = copy.deepcopy(minilm)
    model = adapted(minilm, method)
    before = snapshot(model)
    trainer_for(model, tmp_path / "full").train()

    layers = model.giva_adapter.layers
    trainable = {f"{name}.{t}" for name, layer in layers.items() for t in layer.trainable_names}
    changed = before.changed_tensors(model)
    assert changed - trainable <= {"classifier.weight", "classifier.bias"}, sorted(changed - trainable)[:5]
    assert changed & trainable and {"classifier.weight", "classifier.bias"} <= changed

    checkpoint = tmp_path / "full" / f"checkpoint-{SAVE_EVERY}"
    files = set(os.listdir(checkpoint))
    assert {"adapter.safetensors", "adapter_config.json", "optimizer.pt", "trainer_state.json"} <= files
    assert not files & {"model.safetensors", "pytorch_model.bin"}, files
    model_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    assert os.path.getsize(checkpoint / "adapter.safetensors") < model_bytes / 10

    resumed = adapted(copy.deepcopy(base), method)
    trainer_for(resumed, tmp_path / "resumed").train(resume_from_checkpoint=str(checkpoint))
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(dict(resumed.named_parameters())[name], param, atol=1e-6, rtol=1e-5,
                                       msg=lambda m: f"{name}: {m}")

    final = load_adapter(copy.deepcopy(base), str(tmp_path / "full" / f"checkpoint-{STEPS}"))
    batch = {k: torch.stack([e[k] for e in examples()[:BATCH]]) for k in ("input_ids", "attention_mask")}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(final(**batch).logits, model(**batch).logits)


def test_the_trainer_needs_an_adapted_model(minilm, tmp_path):
    with pytest.raises(ValueError, match="the model has no adapter; call apply_adapter"):
        trainer_for(minilm, tmp_path)


def test_the_best_checkpoint_is_loaded_back_at_the_end(minilm, tmp_path):
    from safetensors.torch import load_file

    model = adapted(minilm, "lora")
    trainer = trainer_for(model, tmp_path, eval_dataset=examples(BATCH), eval_strategy="steps", eval_steps=SAVE_EVERY,
                          load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False)
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert os.path.basename(best) == f"checkpoint-{SAVE_EVERY}"  # eval loss 0.778 at step 2, 0.785 at step 4 (seeded)
    saved = load_file(os.path.join(best, "adapter.safetensors"))
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert torch.equal(saved[name], param.detach()), name
