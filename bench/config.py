"""Sweep settings: presets and sweep files -> one validated SweepConfig -> a grid of Points."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from giva import METHODS, get_method, make_config

from .models import DTYPES, check_adapter_fits, check_available, get_entry
from .peft_methods import check_targets, is_peft_method, make_peft_adapter
from .peft_methods import harness_defaults as peft_harness_defaults


@dataclass
class SweepConfig:
    """Everything a sweep varies or fixes. A sweep file (TOML) sets these keys at top level."""

    models: list[str] = field(default_factory=lambda: ["llama-2m"])
    tasks: list[str] = field(default_factory=lambda: ["profile"])  # "profile" = synthetic batches, timing only
    methods: list[str] = field(default_factory=lambda: ["lora", "vera", "giva"])
    ranks: list[int] = field(default_factory=lambda: [8])  # a method's own "ranks" option overrides these
    seeds: list[int] = field(default_factory=lambda: [0])
    batch_sizes: list[int] = field(default_factory=lambda: [8])
    seq_lens: list[int] = field(default_factory=lambda: [64])
    dtype: str = "float32"
    device: str = "auto"  # auto: cuda when the machine that runs the point has it, else cpu
    warmup_steps: int = 3  # steps run before timing (allocator, caches, lazy init)
    timed_steps: int = 10  # profile task: steps timed after warmup (accuracy tasks time every step after warmup)
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    data_dir: str = ""  # folder of the datasets (../shared/data here); "" = load by name from the hub
    isolate: bool = True  # each point in a fresh process: clean peak memory, a crash loses one point
    point_timeout_s: int = 3600
    # Per-method options, e.g. {"vera": {"ranks": [256], "d_initial": 0.1}, "lora": {"alpha": 16}}: the
    # adapter's options, plus "ranks" (the method's own ranks) and "train" (TrainSettings over `train`
    # for this method's points, e.g. {"giva": {"train": {"lr": 0.02}}}).
    # A method's harness defaults apply where the sweep sets nothing (giva.methods: LoRA's alpha = 2 * r).
    method_options: dict = field(default_factory=dict)
    task_options: dict = field(default_factory=dict)  # e.g. max_eval_examples, text_pair_column, label_type, metric, k
    train: dict = field(default_factory=dict)  # bench.train.TrainSettings fields: steps, lr, eval_every, ...
    # How points are run: bench.executors.ExecutorSettings fields (kind = local, pool, ray or slurm, ...). Not part
    # of the config hash: a run started on one executor resumes on another.
    executor: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("models", "tasks", "methods", "ranks", "seeds", "batch_sizes", "seq_lens"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty; give at least one value")
        for model in self.models:
            get_entry(model)
        for method, options in self.method_options.items():
            if not isinstance(options, dict):
                raise ValueError(f"method_options.{method} must be a table of options, e.g. "
                                 f"[method_options.{method}] ranks = [8]; got {options!r}")
        unknown = [m for m in list(self.methods) + list(self.method_options) if m not in METHODS and not is_peft_method(m)]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)} or peft:<name>")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"unknown device {self.device!r}; use auto, cpu or cuda[:N]")
        from .executors import ExecutorSettings

        ExecutorSettings.from_dict(self.executor)  # unknown keys, bad values
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        for name in ("batch_sizes", "seq_lens"):
            if any(not isinstance(v, int) or v <= 0 for v in getattr(self, name)):
                raise ValueError(f"{name} must be positive integers, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.timed_steps < 1:
            raise ValueError("warmup_steps must be >= 0 and timed_steps >= 1")
        for method in self.methods:  # rank <= 0, unknown options, bad values; PEFT's methods also on each model
            for rank in self.ranks_for(method):
                if is_peft_method(method):
                    adapter = make_peft_adapter(method, rank, self.adapter_options(method, rank))
                    for model in self.models:
                        check_targets(adapter, model)
                else:
                    make_config(method, **self.adapter_options(method, rank))
        from .tasks import TASK_NAMES
        from .taskspec import TaskOptions
        from .train import TrainSettings, default_lr

        for task in self.tasks:
            if task not in TASK_NAMES:
                raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASK_NAMES)}")
        TaskOptions.from_dict(self.task_options)  # unknown names, bad values (label_type, metric, padding, ...)
        known_train = {f.name for f in fields(TrainSettings)}
        for method in self.methods:
            settings = self.train_for(method)
            bad = [k for k in settings if k not in known_train]
            if bad:
                raise ValueError(f"unknown train setting {bad[0]!r}; known: {', '.join(sorted(known_train))}")
            TrainSettings(**settings)  # bad values (steps <= 0, unknown schedule, ...)
            if settings.get("lr") is None:
                default_lr(method)  # a PEFT method we have no default for

    def check_inputs(self, read_data: bool = True) -> None:
        """What needs the models or the data, checked once before any point runs (each a one-line error): a hub id
        neither cached nor reachable, a rank too large or targets that match no layer of a model (on the model
        built without weights), and with read_data each text task's data (a pair column not in the file, a
        regression label that is not a number, Pearson on a 3-class task)."""
        from .tasks import check_text_task

        for model in self.models:
            check_available(get_entry(model))
            for method in self.methods:
                if is_peft_method(method):
                    continue  # checked on the meta model at validation (peft_methods.check_targets)
                for rank in self.ranks_for(method):
                    check_adapter_fits(make_config(method, **self.adapter_options(method, rank)), model)
        if read_data:
            for task in self.tasks:
                check_text_task(task, self.data_dir or None, self.task_options)

    def ranks_for(self, method: str) -> list[int]:
        ranks = self.method_options.get(method, {}).get("ranks", self.ranks)
        if not isinstance(ranks, list) or not ranks or any(isinstance(r, bool) or not isinstance(r, int) or r <= 0
                                                           for r in ranks):
            where = f"method_options.{method}.ranks" if "ranks" in self.method_options.get(method, {}) else "ranks"
            raise ValueError(f"{where}={ranks!r} must be a list of positive integers, e.g. [8, 16]")
        return list(ranks)

    def train_for(self, method: str) -> dict:
        """The TrainSettings overrides of a method's points: `train`, then the method's own "train" option."""
        own = self.method_options.get(method, {}).get("train", {})
        if not isinstance(own, dict):
            raise ValueError(f"method_options.{method}.train must be a table of train settings, e.g. {{lr = 0.02}}")
        return {**self.train, **own}

    def adapter_options(self, method: str, rank: int) -> dict:
        options = {k: v for k, v in self.method_options.get(method, {}).items() if k not in ("ranks", "train")}
        if is_peft_method(method):  # the rank goes into the PEFT config's own rank field (peft_methods)
            return {**peft_harness_defaults(method, rank), **options}
        for key, value in get_method(method).harness_defaults(rank).items():
            options.setdefault(key, value)
        return {"r": rank, **options}

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        """What decides the points; resuming a run dir needs the same hash."""
        relevant = {k: v for k, v in self.to_dict().items() if k not in ("isolate", "point_timeout_s", "executor")}
        return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Point:
    """One cell of the grid: everything needed to produce one results row."""

    model: str
    task: str
    method: str
    rank: int
    seed: int
    batch_size: int
    seq_len: int
    dtype: str
    device: str
    warmup_steps: int
    timed_steps: int
    threads: int
    data_dir: str
    adapter_options: str  # canonical JSON of the make_config options
    task_options: str  # canonical JSON
    train: str  # canonical JSON of TrainSettings overrides

    @property
    def point_id(self) -> str:
        identity = {k: v for k, v in asdict(self).items() if k not in ("data_dir", "threads")}
        return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.model}/{self.task}/{self.method}/r{self.rank}/s{self.seed}/b{self.batch_size}x{self.seq_len}"


def expand_grid(config: SweepConfig) -> list[Point]:
    """The sweep's points in a stable order: models outermost, seeds innermost. The device is the one asked for
    (auto resolves where the point runs), so a point's id is the same on every executor."""
    points = []
    for model, task, bs, sl, method in itertools.product(config.models, config.tasks, config.batch_sizes,
                                                         config.seq_lens, config.methods):
        for rank, seed in itertools.product(config.ranks_for(method), config.seeds):
            options = config.adapter_options(method, rank)
            points.append(Point(
                model=model, task=task, method=method, rank=rank, seed=seed, batch_size=bs, seq_len=sl,
                dtype=config.dtype, device=config.device, warmup_steps=config.warmup_steps,
                timed_steps=config.timed_steps, threads=config.threads,
                data_dir=os.path.abspath(config.data_dir) if config.data_dir else "",  # workers run elsewhere
                adapter_options=_canonical({k: v for k, v in options.items() if k != "r"}),
                task_options=_canonical(config.task_options), train=_canonical(config.train_for(method)),
            ))
    return points


def _canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True)


# Presets: named sweeps. "quick" is the default run: a few minutes on 2 CPU cores.
PRESETS = {
    # Every point's accuracy moves beyond its eval set's binomial noise (tests/test_quick_preset.py), measured
    # here (k = 8, 8192 eval tokens, noise about ±1 point): LoRA r8 +9.2 points, GiVA r8 +2.3, VeRA r64 +1.3;
    # 200 steps add nothing for VeRA and GiVA (+1.3, +2.3; VeRA r256 +1.7).
    # Not llama-2m (0.895 -> 0.898 at best, whatever the steps or lr), nor VeRA under r64 (r16: +0.0 to +0.9)
    # or LoRA r2 in 60 steps (+1.3): a vector method recovers a rank-8 change slowly.
    "quick": dict(
        models=["gpt2-tiny"], tasks=["planted"], methods=["lora", "vera", "giva"], ranks=[8, 32],
        method_options={"vera": {"ranks": [64, 256]}, "lora": {"ranks": [8, 64]}}, batch_sizes=[8], seq_lens=[64],
        train={"steps": 120, "eval_every": 40}, task_options={"k": 8, "eval_batches": 16},
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
