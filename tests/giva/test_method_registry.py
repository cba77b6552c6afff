"""The method registry: a method declared through its MethodSpec (and the harness's defaults for it) runs through
apply, save and the harness."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

import giva.methods
from bench.adapters import default_lr, harness_options
from bench.adapters.ours import HARNESS_DEFAULTS, HarnessDefaults
from bench.config.presets import make_sweep_config
from bench.results.read import read_rows
from bench.run.sweep import run_sweep
from giva import MethodSpec, register_method
from giva.config import AdapterConfig
from giva.layer import AdapterLayer

pytestmark = pytest.mark.usefixtures("single_thread")


@dataclass
class OutScaleConfig(AdapterConfig):
    """y = W0 x + s * (W0 x): one trainable output scale vector per layer (IA3-like)."""

    method = "outscale"
    start: float = 0.0


class OutScaleLinear(AdapterLayer):
    trainable_names = ("scale",)

    def __init__(self, base_layer: nn.Module, start: float):
        super().__init__(base_layer, dropout=0.0)
        self.scale = nn.Parameter(torch.full((self.out_features,), float(start)))

    @property
    def rank(self) -> int:
        return 1

    def delta(self, x):
        return self.scale * self.base_layer(x)

    def delta_weight(self):
        return self.scale[:, None] * self.base_layer.weight


SEEN_BATCHES = []


def build_out_scale(config, targets, *, data=None, saved=None, **_):
    if saved is None:  # applying: the spec says the init takes two batches; check that the harness gave them
        SEEN_BATCHES.append(len(list(data)))
    return {name: OutScaleLinear(layer, config.start) for name, layer in targets.items()}


@pytest.fixture
def out_scale(monkeypatch):
    spec = register_method(MethodSpec("outscale", "OutScale", OutScaleConfig, build_out_scale,
                                      init_batches=lambda config: 2))
    monkeypatch.setitem(HARNESS_DEFAULTS, "outscale", HarnessDefaults(lr=3e-3, options=lambda r: {"start": r / 100}))
    SEEN_BATCHES.clear()
    yield spec
    del giva.methods.METHODS["outscale"]


def test_a_method_registered_through_its_spec_runs_a_point(out_scale, tmp_path):
    config = make_sweep_config(None, dict(models=["llama-2m"], tasks=["profile"], methods=["outscale"], ranks=[4],
                                          batch_sizes=[2], seq_lens=[16], warmup_steps=1, timed_steps=2, threads=1,
                                          isolate=False))  # a fresh process would not have the test's registration
    run_sweep(config, str(tmp_path), ["test"], log=lambda *_: None)
    [row] = read_rows(str(tmp_path / "results.csv"))
    assert row["status"] == "ok", row["error"]
    assert SEEN_BATCHES == [2, 2]  # init_batches reached the point: the timed init, then its untimed cost trace
    assert float(row["lr"]) == 3e-3  # the harness's lr reached the training loop
    assert json.loads(row["method_options"]) == {"start": 0.04}  # the harness's options from the rank
    hidden, inter, layers = 128, 512, 2  # llama-2m: q, k, v, down (out 128) and up (out 512) per layer
    assert int(row["trainable_params"]) == layers * (4 * hidden + inter)
    assert int(row["adapter_file_bytes"]) > 4 * int(row["trainable_params"])


@pytest.mark.parametrize("change, message", [
    (dict(config_class=dict), "config_class must be a subclass"),
    (dict(name="other"), "config_class.method must equal the name 'other'"),
    (dict(build_layers=None), "build_layers must be callable"),
    (dict(display_name=""), "display_name must be a non-empty string"),
])
def test_a_bad_spec_fails_when_declared(change, message):
    fields = dict(name="outscale", display_name="OutScale", config_class=OutScaleConfig, build_layers=build_out_scale)
    with pytest.raises(ValueError, match=message):
        MethodSpec(**{**fields, **change})
    with pytest.raises(TypeError, match="build_layers"):  # a missing field
        MethodSpec(**{k: v for k, v in fields.items() if k != "build_layers"})


@pytest.mark.parametrize("defaults, message", [
    (dict(lr=0), "HarnessDefaults lr=0 must be a positive number"),
    (dict(lr=1e-3, options=None), "HarnessDefaults options must be callable"),
])
def test_bad_harness_defaults_fail_when_declared(defaults, message):
    with pytest.raises(ValueError, match=message):
        HarnessDefaults(**defaults)


def test_a_name_is_registered_once(out_scale):
    with pytest.raises(ValueError, match="method 'outscale' is already registered"):
        register_method(out_scale)


def test_a_method_without_harness_defaults_needs_a_learning_rate(out_scale, monkeypatch):
    monkeypatch.delitem(HARNESS_DEFAULTS, "outscale")
    with pytest.raises(ValueError, match=r"no default learning rate for method 'outscale'; set one: TrainSettings"):
        default_lr("outscale")
    assert harness_options("outscale", 4, {"start": 1.0}) == {"start": 1.0}  # no options derived from the rank
