"""GiVA's gradient cache (GivaConfig.grad_cache): one folder, one `<layer>.safetensors` file of G per target,
and meta.json, written last, marking the cache complete for its layers, shapes, batch count and module mode."""

from __future__ import annotations

import json
import os

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .targets import linear_shape

META_FILE = "meta.json"


class GradientCache:
    """The cache of one gradient pass's settings in `folder`."""

    def __init__(self, folder: str, targets: dict[str, nn.Module], num_batches: int, train_mode: bool):
        self.folder = folder
        shapes = {name: list(linear_shape(layer)) for name, layer in targets.items()}
        self.meta = {"num_batches": num_batches, "train_mode": train_mode, "layers": shapes}

    def _path(self, file: str) -> str:
        return os.path.join(self.folder, file)

    def is_complete(self) -> bool:
        """Used only when complete and made for the same layers, shapes, batch count and mode."""
        try:
            with open(self._path(META_FILE)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return False
        return all(meta.get(key) == value for key, value in self.meta.items())

    def load(self, name: str) -> torch.Tensor:
        return load_file(self._path(f"{name}.safetensors"))["grad"]

    def open_for_writing(self) -> None:
        """Make the folder, and drop the mark of an old cache before its files are overwritten."""
        os.makedirs(self.folder, exist_ok=True)
        if os.path.exists(self._path(META_FILE)):
            os.remove(self._path(META_FILE))

    def save(self, name: str, G: torch.Tensor) -> None:
        save_file({"grad": G.contiguous().cpu()}, self._path(f"{name}.safetensors"))

    def mark_complete(self) -> None:
        with open(self._path(META_FILE), "w") as f:
            json.dump(self.meta, f)
