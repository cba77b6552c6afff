"""Named sweeps (presets), sweep files, and the one way they become a SweepConfig: preset, then file, then the
command line; unknown keys and wrong types are errors."""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .sweep import SweepConfig

# Presets: named sweeps. "quick" is the default run: a few minutes on 2 CPU cores.
PRESETS = {
    # Both axes in one run: ranks measured for real, model size traced. Every point's accuracy moves beyond its eval
    # set's binomial noise (tests/test_quick_preset.py), measured here (k = 8, 8192 eval tokens, noise about ±1
    # point): LoRA r8 +9.2 points, GiVA r8 +2.3, VeRA r64 +1.3; 200 steps add nothing for VeRA and GiVA (+1.3,
    # +2.3; VeRA r256 +1.7). Not llama-2m (0.895 -> 0.898 at best, whatever the steps or lr), nor VeRA under r64
    # (r16: +0.0 to +0.9) or LoRA r2 in 60 steps (+1.3): a vector method recovers a rank-8 change slowly; nor a
    # GPT-2 with a smaller vocabulary (1024 or 2048: 2x cheaper steps, but VeRA r64 +0.7). The size ladder adds
    # llama-1b and llama-7b, each method at its first rank, traced (shapes only: tensor peak against GPU sizes).
    # One thread per point: on 2 cores that other work keeps busy, 2 threads made a step 5x slower (4.1 s against
    # 0.86 s at a load of 13), and the accuracies are the same either way.
    "quick": dict(
        models=["gpt2-tiny"], tasks=["planted"], methods=["lora", "vera", "giva"], ranks=[8, 32],
        method_options={"vera": {"ranks": [64, 256]}, "lora": {"ranks": [8, 64]}}, batch_sizes=[8], seq_lens=[64],
        train={"steps": 120, "eval_every": 60}, task_options={"k": 8, "eval_batches": 16},
        size_ladder=["llama-1b", "llama-7b"], threads=1,
    ),
    "profile-quick": dict(
        models=["llama-2m", "llama-12m"], tasks=["profile"], methods=["lora", "vera", "giva"], ranks=[4, 16],
        batch_sizes=[8], seq_lens=[64], warmup_steps=3, timed_steps=10,
    ),
    "sizes": dict(  # init overhead and step cost as the model grows; the GPU extends it to llama-7b
        models=["llama-2m", "llama-12m", "llama-50m", "llama-140m", "llama-430m", "llama-1b"], tasks=["profile"],
        methods=["lora", "vera", "giva"], ranks=[8], method_options={"vera": {"ranks": [256]}},
        batch_sizes=[4], seq_lens=[128], warmup_steps=2, timed_steps=5,
    ),
    # The PR gate's sweep (`run_bench.py ab`, bench/track/ab.py): each method on one small model, timing only, short
    # processes (3 warm-up and 15 timed steps), one thread. The gate runs the whole sweep in every process and takes
    # each point's median step time; many short paired processes, not long ones, beat the per-process noise.
    "ab": dict(
        models=["llama-2m"], tasks=["profile"], methods=["lora", "vera", "giva"], ranks=[8],
        method_options={"vera": {"ranks": [64]}}, batch_sizes=[4], seq_lens=[64], warmup_steps=3, timed_steps=15,
        threads=1,
    ),
    # The exact counts `make test` guards (bench/track/counts.py): both model families, every method, small shapes
    # (estimate: a few seconds, no hardware).
    "counts": dict(
        models=["gpt2-tiny", "llama-2m"], tasks=["profile"], methods=["lora", "vera", "giva"], ranks=[8],
        method_options={"vera": {"ranks": [64]}}, batch_sizes=[2], seq_lens=[16], threads=1,
    ),
    # For `run_bench.py estimate` (shapes only, no GPU needed): does a method fit a 24/40/80/141 GiB card?
    "sizes-estimate": dict(
        models=["llama-140m", "llama-1b", "llama-7b", "llama-13b", "llama-70b"], tasks=["profile"],
        methods=["lora", "vera", "giva"], ranks=[16], method_options={"vera": {"ranks": [256]}},
        batch_sizes=[4], seq_lens=[1024], dtype="bfloat16", threads=1,
    ),
    # MiniLM on SST-2, about 11 minutes on 2 CPU cores. GiVA at r meets VeRA and LoRA at 8r (the paper's claim)
    # and LoRA at r (r = 8), as the report's claim check lays out.
    "accuracy-quick": dict(
        models=["minilm"], tasks=["sst2"], methods=["lora", "vera", "giva"], ranks=[2, 8, 32],
        method_options={"vera": {"ranks": [16, 64, 256]}, "lora": {"ranks": [8, 16, 64]}}, batch_sizes=[16],
        seq_lens=[64], warmup_steps=3,
        train={"steps": 150, "eval_every": 50}, task_options={"max_eval_examples": 872},
        data_dir="../shared/data",
    ),
    # Ours against PEFT's at the same rank, and GiVA's init beside PEFT's data-driven LoRA inits (PiSSA: SVD of the
    # weights; EVA: SVD of the activations of one batch), MiniLM, batch 16 x 64: 12 minutes on 2 busy shared cores.
    "peft-quick": dict(
        models=["minilm"], tasks=["profile"], methods=["lora", "peft:lora", "vera", "peft:vera", "giva", "peft:pissa",
                                                       "peft:eva"],
        ranks=[8], method_options={"vera": {"ranks": [256]}, "peft:vera": {"ranks": [256]}}, batch_sizes=[16],
        seq_lens=[64], warmup_steps=3, timed_steps=20, threads=1,
    ),
    # MiniLM on the sentence-pair tasks MRPC (accuracy, F1) and STS-B (regression: Pearson, Spearman), the same
    # ranks as accuracy-quick; under 15 minutes on 2 idle CPU cores.
    "glue-quick": dict(
        models=["minilm"], tasks=["mrpc", "stsb"], methods=["lora", "vera", "giva"], ranks=[2, 8, 32],
        method_options={"vera": {"ranks": [16, 64, 256]}, "lora": {"ranks": [8, 16, 64]}}, batch_sizes=[16],
        seq_lens=[128], warmup_steps=3, train={"steps": 100, "eval_every": 50},
        task_options={"max_eval_examples": 400}, data_dir="../shared/data",
    ),
    # The paper's headline claim with error bars: GiVA at r against VeRA and LoRA at 8r, 3 seeds each, so that the
    # claim check can give each pair a t-interval over seeds and a verdict (summary.md, claims.csv). MiniLM on
    # SST-2 (accuracy) and STS-B (Pearson); one length serves both (padding is to each batch's longest text).
    "claims-quick": dict(
        models=["minilm"], tasks=["sst2", "stsb"], methods=["lora", "vera", "giva"], ranks=[2, 8], seeds=[0, 1, 2],
        method_options={"vera": {"ranks": [16, 64]}, "lora": {"ranks": [16, 64]}}, batch_sizes=[16],
        seq_lens=[128], warmup_steps=3, train={"steps": 100}, task_options={"max_eval_examples": 500},
        data_dir="../shared/data", threads=1,
    ),
    # Bases from another task: GiVA r8 trained on SST-2 with its gradient batch from SST-2 itself, TREC (questions)
    # or AG News (news topics), against VeRA at the same rank (random bases), 2 seeds; the report's transfer matrix.
    "transfer-quick": dict(
        models=["minilm"], tasks=["sst2"], methods=["vera", "giva"], ranks=[8], seeds=[0, 1],
        method_options={"giva": {"init_task": ["sst2", "trec", "agnews"]}}, batch_sizes=[16], seq_lens=[64],
        warmup_steps=3, train={"steps": 150}, task_options={"max_eval_examples": 872}, data_dir="../shared/data",
        threads=1,
    ),
    # The GiVA paper's GLUE recipe (../shared/METHODS.md): RoBERTa-base, targets query/key/value/dense (the
    # family's default), AdamW with weight decay 0.01, 6% warmup then linear decay, batch 64, max length 128;
    # GiVA r 8 at lr 1e-2 (and below, for the rank curve), LoRA r 4 (alpha 8), VeRA r 1024 (d_initial 0.1) at
    # lr 1e-2. The paper trains 10 epochs per task; one step count serves every task here: 2000 steps of 64 are
    # 10 epochs of CoLA's 8.5k examples, more for RTE/MRPC/STS-B, about 2 of SST-2 and 1.2 of QNLI. The GLUE
    # tasks come by name from the hub (data_dir ""). For a GPU; the README says how long it takes.
    "paper-glue": dict(
        models=["FacebookAI/roberta-base"], tasks=["cola", "sst2", "mrpc", "qnli", "rte", "stsb"],
        methods=["lora", "vera", "giva"], ranks=[1, 2, 4, 8], seeds=[0, 1, 2],
        method_options={"vera": {"ranks": [1024], "d_initial": 0.1},
                        "lora": {"ranks": [4], "train": {"lr": 4e-4}}},  # LoRA's RoBERTa-base GLUE lr (Hu et al.)
        batch_sizes=[64], seq_lens=[128], device="cuda", warmup_steps=10,
        train={"steps": 2000, "eval_every": 500, "weight_decay": 0.01, "warmup_ratio": 0.06, "schedule": "linear",
               "lr": 1e-2},
        task_options={"max_eval_examples": 100_000, "eval_batch_size": 256}, data_dir="",
    ),
    # Image classification on CPU: a small random ViT (vit-micro) on scikit-learn's handwritten digits (1,438 train,
    # 359 eval images), every method at two ranks (GiVA r against VeRA 8r and LoRA r); the head trains beside the
    # adapter. 16 min on 2 CPU cores that other jobs loaded 4-7x over (1.1-3.1 GFLOPs a step); README "Images and
    # generated answers" has the figures.
    "image-quick": dict(
        models=["vit-micro"], tasks=["digits"], methods=["lora", "vera", "giva"], ranks=[4, 16],
        method_options={"vera": {"ranks": [32, 128]}}, batch_sizes=[32], warmup_steps=3,
        train={"steps": 200, "eval_every": 50}, threads=1,
    ),
    # Generation scored by its answers on CPU: SmolLM2-135M (pretrained, the wheel) on 500 generated arithmetic
    # word problems, 100 held-out ones answered by greedy decoding and scored by their last number; LoRA and GiVA at
    # two ranks. Measured here only while other jobs loaded the 2 cores 3-9x over (7 to 51 min a point); the
    # README has the figures.
    "gen-quick": dict(
        models=["smollm2-135m"], tasks=["gen:arithmetic"], methods=["lora", "giva"], ranks=[8, 32],
        batch_sizes=[8], seq_lens=[64], warmup_steps=3, train={"steps": 40}, task_options={"max_eval_examples": 100},
        threads=1,
    ),
    # The GiVA authors' image recipe, transcribed from their configs (src/conf/image: train.yaml and training_mode/):
    # DINOv2-base from the hub (their README's example), CIFAR-100, Food-101, Flowers-102 and RESISC45 from the hub
    # (the splits they report on), targets q/k/v/fc1/fc2 (the vision default, their list), the classifier trained
    # in full, AdamW with weight decay 0.1, cosine schedule without warmup, clipping at 1.0, 10 epochs of batch 128,
    # their augmentation (random crop of 50-100%, flip); GiVA r 32 (basis Vr, as the paper) and VeRA r 256
    # (d_initial 1.0), LoRA r 32 with their alpha of 1, all at lr 1e-2 (their script takes one LR for every method;
    # their README's example gives 1e-2; no LoRA lr of theirs is written down).
    # They train in bf16-mixed; the harness has no autocast for training, so fp32 here. 3 seeds: 36 points. For a
    # GPU; README "Images and generated answers" estimates its time.
    "paper-image": dict(
        models=["facebook/dinov2-base"], tasks=["cifar100", "food101", "flowers102", "resisc45"],
        methods=["lora", "vera", "giva"], ranks=[32], seeds=[0, 1, 2],
        method_options={"vera": {"ranks": [256], "d_initial": 1.0}, "lora": {"alpha": 1.0}},
        batch_sizes=[128], device="cuda", warmup_steps=10,
        train={"epochs": 10.0, "eval_every": 1000, "weight_decay": 0.1, "warmup_ratio": 0.0, "schedule": "cosine",
               "lr": 1e-2, "head_lr": 1e-2},
        task_options={"augment": True, "max_eval_examples": 100_000, "eval_batch_size": 128}, data_dir="",
    ),
    # For `run_bench.py estimate`: ViT-B, ViT-L, ViT-H and CLIP ViT-L/14 image points at the GiVA authors' batch of
    # 128, bf16, at their ranks (GiVA and LoRA 32, VeRA 256): do they fit a 24/40/80/141 GiB card?
    "image-estimate": dict(
        models=["vit-base", "vit-large", "vit-huge", "clip-vit-large"], tasks=["profile"],
        methods=["lora", "vera", "giva"], ranks=[32], method_options={"vera": {"ranks": [256]}},
        batch_sizes=[128], dtype="bfloat16", threads=1,
    ),
    "paper-gpu": dict(  # ranks 1..1024, 3 seeds, several tasks; hours on one GPU
        models=["minilm", "smollm2-135m"], tasks=["sst2", "trec", "emotion", "agnews"],
        methods=["lora", "vera", "giva"], ranks=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], seeds=[0, 1, 2],
        batch_sizes=[64], seq_lens=[128], device="cuda", train={"steps": 2000, "eval_every": 250},
        method_options={"lora": {"ranks": [1, 2, 4, 8, 16, 32, 64]}}, data_dir="../shared/data",
    ),
}


def load_sweep_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"sweep file {path!r} not found; give the path of a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"sweep file {path!r} does not parse as TOML: {e}") from None


def sweep_toml(values: dict) -> str:
    """A sweep's values (a preset's dict, or a sweep file's) as a sweep file that load_sweep_file reads back equal."""
    return "".join(f"{_toml_key(key)} = {_toml_value(value)}\n" for key, value in values.items())


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"a sweep value must be a bool, number, string, list or table, got {value!r}")


def make_sweep_config(preset: str | None = None, file_values: dict | None = None, overrides: dict | None = None) -> SweepConfig:
    """Preset values, then the sweep file's, then command-line overrides; unknown keys and wrong types are errors."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = copy.deepcopy(PRESETS.get(preset, {}))
    defaults = {f.name: f for f in fields(SweepConfig)}
    for source in (file_values or {}, overrides or {}):
        for key, value in source.items():
            if key not in defaults:
                raise ValueError(f"unknown sweep key {key!r}; known keys: {', '.join(defaults)}")
            values[key] = value
    for key, value in values.items():
        default = defaults[key].default_factory() if callable(defaults[key].default_factory) else defaults[key].default
        if not isinstance(value, type(default)) and not (isinstance(default, float) and isinstance(value, int)):
            raise ValueError(f"sweep key {key!r} must be a {type(default).__name__}, got {value!r}")
    return SweepConfig(**values)
