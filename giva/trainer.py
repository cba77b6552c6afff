"""Training our adapters with the transformers Trainer: checkpoints hold the adapter only, and resume.

    model = apply_adapter(model, GivaConfig(r=8, trainable_modules=["classifier"]), data=first_batches)
    trainer = AdapterTrainer(model=model, args=TrainingArguments("out", save_steps=100), train_dataset=...)
    trainer.train()                                         # optimizes what requires grad: adapter and head
    trainer.train(resume_from_checkpoint="out/checkpoint-100")

apply_adapter runs before the Trainer, so the Trainer's optimizer sees only the parameters that still require
grad (the adapter's and trainable_modules'). The stock Trainer would write the whole model into every
checkpoint; AdapterTrainer writes save_adapter's folder instead (adapter.safetensors + adapter_config.json, our
format for every method), beside the optimizer, scheduler and trainer state, and reads it back when resuming or
loading the best checkpoint. The final model loads with load_adapter(fresh_base_model, "out/checkpoint-N").
"""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file
from transformers import Trainer

from .inject import adapter_state
from .io import CONFIG_FILE, WEIGHTS_FILE, adapter_tensors, copy_tensors, save_adapter

TRAINING_ARGS_FILE = "training_args.bin"  # the name the Trainer gives it


def load_adapter_weights(model: torch.nn.Module, path: str) -> None:
    """Copy the tensors of the checkpoint at `path` into the adapter `model` already has (the same config)."""
    weights_path = os.path.join(path, WEIGHTS_FILE)
    if not os.path.exists(weights_path):
        raise FileNotFoundError(f"no {WEIGHTS_FILE} in {path!r}; resume from a checkpoint AdapterTrainer wrote")
    mismatched = copy_tensors(adapter_tensors(model), load_file(weights_path))
    if mismatched:
        raise ValueError(f"checkpoint {path!r} was saved from another adapter (differs at {mismatched[:3]}); "
                         f"resume with the adapter config it was trained with ({os.path.join(path, CONFIG_FILE)})")


class AdapterTrainer(Trainer):
    """A Trainer whose checkpoints hold the adapter (and trainable_modules) only, in our format."""

    def __init__(self, model=None, *args, **kwargs):
        adapter_state(model)  # fails with the fix when apply_adapter has not run
        super().__init__(model, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        save_adapter(self.model, output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        load_adapter_weights(model if model is not None else self.model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        load_adapter_weights(self.model, self.state.best_model_checkpoint)
