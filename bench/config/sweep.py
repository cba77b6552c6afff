"""A sweep's settings (SweepConfig), and one point of its grid (Point).

SweepConfig checks what needs nothing of the harness: empty axes, types of tables, value ranges. Names (models,
methods, tasks, dtypes, executors) and options are checked against their registries by bench/run/validate.py, and
what needs the models or the data by bench/run/checks.py, both before any point runs. Each field's `help` metadata is
its --help text (bench/cli.py makes the flags of `run` and `estimate` from these fields).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields

from ..tasks.init_task import InitTask  # Point.init_task; SweepConfig needs nothing of the harness
from .train import TrainSettings

# Method options the grid expands or the harness uses, which are not the adapter's own: the method's ranks, its
# train settings, the task its init reads.
GRID_OPTIONS = ("ranks", "train", "init_task")


@dataclass
class SweepConfig:
    """Everything a sweep varies or fixes. A sweep file (TOML) sets these keys at top level."""

    models: list[str] = field(default_factory=lambda: ["llama-2m"], metadata={
        "help": "comma-separated model names (`list models`), hub ids or paths"})
    # The size axis beside the measured points: these models (any size; the ladder goes to llama-70b) traced by
    # `estimate` (FakeTensorMode: FLOPs and tensor bytes, no timings) as the profile task at the sweep's shapes,
    # each method at its first rank, the first seed. [] = none. Their rows share the run and its report.
    size_ladder: list[str] = field(default_factory=list, metadata={
        "help": "comma-separated models traced by `estimate` beside the measured ones, each method at its first "
                "rank (the quick preset's: llama-1b,llama-7b); --size-ladder '' traces none", "metavar": "MODELS"})
    tasks: list[str] = field(default_factory=lambda: ["profile"], metadata={  # "profile" = synthetic batches, timing only
        "help": "comma-separated tasks: {tasks}"})
    # the three the presets measure where they name no others
    methods: list[str] = field(default_factory=lambda: ["lora", "vera", "giva"], metadata={
        "help": "comma-separated methods: ours, and PEFT's as peft:<name> (`list methods` names them)"})
    ranks: list[int] = field(default_factory=lambda: [8], metadata={  # a method's own "ranks" option overrides these
        "help": "comma-separated ranks for every method; replaces a preset's or sweep file's per-method ranks"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "comma-separated seeds"})
    batch_sizes: list[int] = field(default_factory=lambda: [8], metadata={"help": "comma-separated batch sizes"})
    seq_lens: list[int] = field(default_factory=lambda: [64], metadata={
        "help": "comma-separated sequence lengths (tokens)"})
    dtype: str = field(default="float32", metadata={"help": "one of {dtypes}"})
    device: str = field(default="auto", metadata={  # auto: cuda when the machine that runs the point has it
        "help": "auto (cuda where the point runs has it, else cpu), cpu or cuda[:N]"})
    warmup_steps: int = field(default=3, metadata={  # steps run before timing (allocator, caches, lazy init)
        "help": "steps run before timing"})
    timed_steps: int = field(default=10, metadata={  # accuracy tasks time every step after warmup
        "help": "profile task: steps timed after the warmup"})
    threads: int = field(default=0, metadata={"help": "torch threads per point (0 = default)"})
    # folder of the datasets (../shared/data here); "" = load by name from the hub. Relative paths here, in `models`
    # and in task_options (train_file, eval_file) are resolved from the directory the sweep is started in.
    data_dir: str = field(default="", metadata={
        "help": "folder with {data_folders} (e.g. ../shared/data); empty: the datasets by name from the Hugging "
                "Face hub"})
    isolate: bool = field(default=True, metadata={  # each point in a fresh process: clean peak memory
        "help": "run points in this process (faster start, memory readings shared between points, a crash ends the "
                "sweep)", "flag": "--in-process", "command": "run"})
    # glibc's MALLOC_MMAP_THRESHOLD_ for point processes on CPU (0: glibc's own dynamic threshold, the default). With
    # 65536, blocks from 64 KiB up are mapped and unmapped one by one, so process RSS (peak_mem_bytes) follows the
    # live tensors instead of the heap glibc keeps for reuse (RSS growth 1.0x the tracked tensors with it, 1.2-1.9x
    # without: tests/benchmarks/rss_vs_tracked.py), but every step then faults its pages in anew: MiniLM's training
    # step 1.75-1.9x slower. For runs about CPU memory, not time. Fresh point processes only (not --in-process).
    malloc_mmap_threshold: int = field(default=0, metadata={
        "help": "MALLOC_MMAP_THRESHOLD_ of point processes on CPU: 65536 makes RSS (peak_mem_bytes) follow the live "
                "tensors but slows each step (1.75-1.9x on MiniLM); default 0, glibc's own, whose kept heap lets RSS "
                "run past them", "metavar": "BYTES", "command": "run"})
    point_timeout_s: int = field(default=3600, metadata={
        "help": "seconds a point (or a trace) may take before it is stopped and recorded failed", "metavar": "S"})
    # Per-method options, e.g. {"vera": {"ranks": [256], "d_initial": 0.1}, "lora": {"alpha": 16}}: the
    # adapter's options, plus "ranks" (the method's own ranks), "train" (TrainSettings over `train`
    # for this method's points, e.g. {"giva": {"train": {"lr": 0.02}}}) and, for a method whose init reads
    # training data, "init_task": the task whose batches the init reads instead of the point's own (a name, a
    # table {task = NAME, <task options>}, or a list of those: an axis of the grid).
    # A method's harness defaults apply where the sweep sets nothing (giva.methods: LoRA's alpha = 2 * r).
    method_options: dict = field(default_factory=dict)
    task_options: dict = field(default_factory=dict)  # e.g. max_eval_examples, text_pair_column, label_type, metric, k
    train: dict = field(default_factory=dict)  # bench.config.train.TrainSettings fields: steps, lr, eval_every, ...
    # How points are run: the executor's name (kind = local, pool, ray or slurm: bench/run/executors/) and its
    # settings' fields. Not part of the config hash: a run started on one executor resumes on another.
    executor: dict = field(default_factory=dict)
    # `estimate` only: the fine-tuning length, in training steps, that each row's init_flops_share assumes; 0: the
    # point's own (the train steps, or warmup + timed steps for profile). A measured point states its own steps.
    assume_steps: int = field(default=0, metadata={
        "help": "the fine-tuning length, in training steps, that each row's init_flops_share (the init's share of "
                "the run's FLOPs) assumes; default: each point's own (its train steps)", "metavar": "N",
        "command": "estimate"})

    def __post_init__(self):
        for name in ("models", "tasks", "methods", "ranks", "seeds", "batch_sizes", "seq_lens"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty; give at least one value")
        both = sorted(set(self.models) & set(self.size_ladder))
        if both:
            raise ValueError(f"model {both[0]} is in both models (measured) and size_ladder (estimated); keep it in "
                             "one (size_ladder in a sweep file, --size-ladder on the command line)")
        for method, options in self.method_options.items():
            if not isinstance(options, dict):
                raise ValueError(f"method_options.{method} must be a table of options, e.g. "
                                 f"[method_options.{method}] ranks = [8]; got {options!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"unknown device {self.device!r}; use auto, cpu or cuda[:N]")
        for name in ("batch_sizes", "seq_lens"):
            if any(not isinstance(v, int) or v <= 0 for v in getattr(self, name)):
                raise ValueError(f"{name} must be positive integers, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.timed_steps < 1:
            raise ValueError("warmup_steps must be >= 0 and timed_steps >= 1")
        if self.malloc_mmap_threshold < 0:
            raise ValueError(f"malloc_mmap_threshold={self.malloc_mmap_threshold} must be >= 0 bytes (0: glibc's own)")
        for method in self.methods:
            self.ranks_for(method)  # each a positive integer
        if isinstance(self.assume_steps, bool) or self.assume_steps < 0:
            raise ValueError(f"assume_steps={self.assume_steps!r} must be a number of training steps >= 1, or 0 for "
                             "each point's own")
        for method in self.methods:
            self.init_tasks_for(method)  # not an empty list
        known_train = {f.name for f in fields(TrainSettings)}
        for method in self.methods:
            settings = self.train_for(method)
            bad = [k for k in settings if k not in known_train]
            if bad:
                raise ValueError(f"unknown train setting {bad[0]!r}; known: {', '.join(sorted(known_train))}")
            TrainSettings(**settings)  # bad values (steps <= 0, unknown schedule, ...)

    def ranks_for(self, method: str) -> list[int]:
        ranks = self.method_options.get(method, {}).get("ranks", self.ranks)
        if not isinstance(ranks, list) or not ranks or any(isinstance(r, bool) or not isinstance(r, int) or r <= 0
                                                           for r in ranks):
            where = f"method_options.{method}.ranks" if "ranks" in self.method_options.get(method, {}) else "ranks"
            raise ValueError(f"{where}={ranks!r} must be a list of positive integers, e.g. [8, 16]")
        return list(ranks)

    def init_tasks_for(self, method: str) -> list:
        """The method's init_task values (an axis of the grid); [None]: the point's own task."""
        value = self.method_options.get(method, {}).get("init_task")
        if value is None:
            return [None]
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError(f"method_options.{method}.init_task is an empty list; give task names, or drop it")
        return values

    def train_for(self, method: str) -> dict:
        """The TrainSettings overrides of a method's points: `train`, then the method's own "train" option."""
        own = self.method_options.get(method, {}).get("train", {})
        if not isinstance(own, dict):
            raise ValueError(f"method_options.{method}.train must be a table of train settings, e.g. {{lr = 0.02}}")
        return {**self.train, **own}

    def own_options(self, method: str) -> dict:
        """The adapter's own options the sweep sets for the method (not the grid's: ranks, train, init_task)."""
        return {k: v for k, v in self.method_options.get(method, {}).items() if k not in GRID_OPTIONS}

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        """What decides the points; resuming a run dir needs the same hash."""
        relevant = {k: v for k, v in self.to_dict().items()
                    if k not in ("isolate", "point_timeout_s", "executor", "malloc_mmap_threshold")}
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
    adapter_options: str  # canonical JSON of the make_config options, and init_task where set
    task_options: str  # canonical JSON
    train: str  # canonical JSON of TrainSettings overrides
    # Where the sweep was started: the point resolves relative paths (a model folder, the csv task's files) from
    # here, as the checks did before any point ran; "" = its own working directory.
    work_dir: str = ""
    malloc_mmap_threshold: int = 0  # bytes; set for the point's process where it runs on CPU (0: glibc's default)
    estimated: bool = False  # traced by `estimate` instead of run (a size_ladder point, or every point of `estimate`)
    assume_steps: int = 0  # estimated: the fine-tuning length init_flops_share assumes (0: the point's own steps)

    @property
    def point_id(self) -> str:
        identity = {k: v for k, v in asdict(self).items()
                    if k not in ("data_dir", "threads", "work_dir", "malloc_mmap_threshold", "estimated", "assume_steps")}
        return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def init_task(self) -> InitTask | None:
        """The task whose batches the adapter's init reads; None: the point's own."""
        value = json.loads(self.adapter_options).get("init_task")
        return None if value is None else InitTask.parse(value)

    @property
    def config_options(self) -> dict:
        """The adapter's own options (make_adapter's), without init_task."""
        return {k: v for k, v in json.loads(self.adapter_options).items() if k != "init_task"}

    @property
    def label(self) -> str:
        init = self.init_task
        return (f"{self.model}/{self.task}/{self.method}/r{self.rank}/s{self.seed}/b{self.batch_size}x{self.seq_len}"
                + (f"/init={init.label}" if init else ""))


