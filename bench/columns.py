"""The one list of results.csv columns: name, unit, meaning, and how each is judged and shown.

Everything that reads or writes results derives from COLUMNS: the CSV header and
bench/SCHEMA.md (results/write.py), typed reading (results/read.py), a row's identity
(run/rows.py), how compare, history and the A/B gate judge each (track/rules.py), what history keeps and
plots (track/history.py), the summary table (report/summary.py) and the progress line
(run/sweep.py). Adding a column is one entry here.

    Column(name, unit, meaning, better=..., compare=..., threshold=..., history=..., table=..., progress=...,
           identity=...)

unit: "text" (not a number), "" (a plain number: rank, seed), "s", "ms", "bytes", "count", "FLOPs",
"tokens/s", "fraction", "score" (a task's metric: accuracy, F1, a correlation). compare: "exact" (any change is flagged), "noisy" (beyond `threshold` and the
noise `floor`), "steps" (beyond `threshold` and significant by the raw step times), "accuracy" (a
fraction; `threshold` in points), or "" (not compared).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEMA_VERSION = 4  # 2: lr and head_lr; 3: estimated, FLOPs and tensor memory by category, host and executor,
# device as the point ran, eval_metric and eval_score*, eval_examples, adapter_seed; 4: image_transform, answer_rule,
# decoding, gen_time_s, gen_new_tokens (image and generation tasks), load_avg_1m_start, load_avg_1m_end, cpu_steal_s,
# ctx_switches_involuntary, cost_trace_batch, init_task, init_share, init_flops_share, init_share_steps,
# init_share_steps_source
COMPARE_KINDS = ("exact", "noisy", "steps", "accuracy", "")
MIB = 2**20


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    meaning: str
    better: str = ""  # "lower", "higher" or "" (neither, or exact)
    compare: str = ""  # one of COMPARE_KINDS
    threshold: str = ""  # default limit of a noisy / steps / accuracy column: "10%" (relative), "1pt", "0.05"
    history_threshold: str = ""  # the history's minimum effect where smaller than `threshold` (it pools runs)
    floor: float = 0.0  # noisy: a change smaller than this (in the unit) never counts
    floor_rss: float = 0.0  # noisy memory: the floor when either side read process RSS (peak_mem_source)
    history: bool = False  # kept in history.csv and plottable over commits
    table: str = ""  # heading in summary.md's method x rank table ("" = not shown)
    progress: str = ""  # label in the sweep's one-line progress output ("" = not shown)
    identity: bool = False  # part of what the point is (its configuration), not of what was measured
    # the exact counts whose change explains a change of this metric (compare, history, the A/B gate: "explained"):
    # the first predicts its size (FLOPs: time in proportion; tensor bytes: memory by the bytes added), the
    # operator-level counts after it name what moved, with sizes ("+48 copies, +12.6 MiB copied per step")
    explained_by: tuple[str, ...] = ()
    noun: str = ""  # an operator-level count: what it counts, as an explanation names it ("copies", "copied")
    torch_counted: bool = False  # counted by torch's dispatcher: depends on the torch version (COUNTED_BY)

    def __post_init__(self):
        if self.compare not in COMPARE_KINDS:
            raise ValueError(f"column {self.name}: compare {self.compare!r} is not one of {COMPARE_KINDS}")
        if self.compare in ("noisy", "steps", "accuracy") and not (self.threshold and self.better):
            raise ValueError(f"column {self.name}: a {self.compare} column needs `better` and a default `threshold`")

    @property
    def is_text(self) -> bool:
        return self.unit == "text"

    @property
    def is_timing(self) -> bool:
        """A wall-clock reading, which other work on the machine slows (the summary marks those of a busy machine)."""
        return self.unit in ("s", "ms", "tokens/s")

    @property
    def is_machine_reading(self) -> bool:
        """A judged timing or memory reading: what the processor, device and thread count shape as well as the code
        (memory as RSS or CUDA allocated depends on the allocator, per-thread arenas and the kernels a processor or
        GPU picks), so compare and history judge it only between runs of one machine (track/machine.py)."""
        return self.compare in ("steps", "noisy")

    def format(self, value: float) -> str:
        """A value for people, with its unit: bytes in KiB / MiB, FLOPs in G, counts with separators."""
        if self.unit == "bytes":
            return f"{value / MIB:,.1f} MiB" if abs(value) >= MIB else f"{value / 1024:,.1f} KiB"
        if self.unit == "FLOPs":
            return f"{value / 1e9:.3g} GFLOPs"
        if self.unit in ("count", ""):
            return f"{value:,.0f}" if float(value).is_integer() else f"{value:.3g}"
        if self.unit in ("fraction", "score"):
            return f"{value:.3f}"
        if self.unit == "ms":
            return f"{value:.2f} ms"
        return f"{value:.3g} {self.unit}"


# Noise floors (track/rules.py noise_floor): init is timed once per point, and on a busy CPU one timing jitters by tens of
# ms; a process's RSS moves by tens of MiB (allocator caches, lazy imports). Two runs of the quick preset
# back to back, same code, differed by up to 44 ms in init_total_s and 54 MiB in RSS. CUDA memory counters
# are exact enough to need no floor, and FLOPs and tracked tensor bytes are counts: exact.
INIT_FLOOR_S = 0.05
RSS_FLOOR_BYTES = 64 * MIB
_INIT = dict(better="lower", compare="noisy", threshold="25%", floor=INIT_FLOOR_S)
_MEMORY = dict(better="lower", compare="noisy", threshold="5%", floor_rss=RSS_FLOOR_BYTES)
_EXACT = dict(compare="exact", history=True)  # counts: the history keeps them all, to explain timing changes
_OPS = dict(_EXACT, unit="count", torch_counted=True)  # operator-level counts (bench/measure/operators.py)
_OP_BYTES = dict(_OPS, unit="bytes")
COUNTED_BY = "counts_torch"  # the column that says which torch counted the torch_counted columns
OPERATOR_MEANING = {  # what each operator-level count counts, in a step or an init (bench/measure/operators.py)
    "aten_ops": "aten operator calls as torch's dispatcher sees them (composites decomposed, optimizer included)",
    "copies": "copies: copy_, _to_copy, clone (a contiguous or .to that copies) and their kin",
    "copy_bytes": "bytes written by those copies (their outputs)",
    "dtype_conversions": "copies whose output dtype differs from their source's (.float(), .to(bf16))",
    "alloc_count": "tensors operators returned new (not declared an alias of an input): every allocation, not only "
                   "those alive at the peak",
    "alloc_bytes": "storage bytes of those new tensors",
    "syncs": "host reads of tensor values, a synchronisation where the tensor is on a GPU: .item() "
             "(_local_scalar_dense), data-dependent shapes (nonzero, masked_select, unique), copies to the CPU",
    "cuda_syncs": "CUDA only: synchronising calls as torch.cuda.set_sync_debug_mode reports them",
    "cuda_kernels": "CUDA only: kernels launched (torch.profiler)",
}
NOUNS = {"aten_ops": "operator calls", "copies": "copies", "copy_bytes": "copied", "dtype_conversions":
         "dtype conversions", "alloc_count": "allocations", "alloc_bytes": "allocated", "syncs": "synchronisations",
         "cuda_syncs": "CUDA synchronisations", "cuda_kernels": "kernel launches"}


def operator_columns(init: bool) -> list[Column]:
    """The operator-level counts of the step (`<count>_per_step`) or of the init (`init_<count>`)."""
    return [Column(f"init_{count}" if init else f"{count}_per_step", **(_OP_BYTES if count.endswith("bytes") else _OPS),
                   meaning=f"{'apply_adapter' if init else 'one training step'}: {meaning}", noun=NOUNS[count])
            for count, meaning in OPERATOR_MEANING.items()]


STEP_OPERATORS, INIT_OPERATORS = ([c.name for c in operator_columns(init)] for init in (False, True))

COLUMNS = [
    Column("schema_version", "", "version of this column list; compare refuses to mix versions"),
    Column("point_id", "text", "stable hash of the point's configuration (model, task, method, options, rank, seed, "
           "shapes, device as asked for: auto, cpu, cuda); the same whichever executor runs it"),
    Column("status", "text", "ok, failed or skipped"),
    Column("error", "text", "one-line reason when failed or skipped"),
    Column("estimated", "", "1: predicted by `run_bench.py estimate` or as a point of the sweep's size ladder (a "
           "shapes-only trace, FakeTensorMode: FLOPs and tensor bytes, nothing timed); 0: measured"),
    Column("model", "text", "model registry name", identity=True),
    Column("task", "text", "'profile' (synthetic batches, timing only) or a task name", identity=True),
    Column("method", "text", "a registered method (giva.methods: lora, vera, giva, ...) or PEFT's as peft:<name> "
           "(bench/adapters/peft.py)", identity=True),
    Column("rank", "", "configured rank r", identity=True),
    Column("method_options", "text", "JSON of the method's options (alpha, d_initial, basis, num_grad_batches, ...)", identity=True),
    Column("init_task", "text", "the task whose training batches fed a data-driven init (GiVA's gradient), as "
           "method option init_task names it (a name, or name(option=value, ...)); empty: the point's own task",
           identity=True),
    Column("seed", "", "the sweep seed: model init, data order, and the adapter's random parts unless its options fix "
           "them", identity=True),
    Column("adapter_seed", "", "seed of the adapter's random parts (GiVA's B and SVD sketch, VeRA's projections); empty "
           "for LoRA and PEFT's methods"),
    Column("batch_size", "", "examples per step", identity=True),
    Column("seq_len", "", "tokens per example (image tasks do not use it: the image size is the model's)",
           identity=True),
    Column("dtype", "text", "model dtype", identity=True),
    Column("device", "text", "the device the point ran on, resolved where it ran (cpu or cuda:N as its process saw "
           "them)", identity=True),
    Column("host", "text", "host name of the machine the point ran on"),
    Column("executor", "text", "what ran the point: local, pool, ray or slurm; pool+shared-timing when "
           "--allow-shared-timing let timed points share cores"),
    Column("model_params", "count", "parameters of the base model before adaptation"),
    Column("trainable_params", "count", "parameters the optimizer updates (adapter plus any trained head)", **_EXACT,
           table="trainable params", progress="trainable"),
    Column("adapter_params", "count", "trainable parameters inside the adapter layers (METHODS.md formulas)", **_EXACT),
    Column("total_params", "count", "parameters of the adapted model", **_EXACT),
    Column("adapted_layers", "count", "number of layers that got an adapter"),
    Column("rank_min", "", "smallest effective rank over adapted layers"),
    Column("rank_max", "", "largest effective rank over adapted layers"),
    Column("capped_layers", "count", "layers whose rank was capped below r (GiVA: min(out, in))"),
    Column("effective_ranks", "text", "JSON {layer: rank} of the capped layers only; empty when none was capped"),
    Column("adapter_buffer_bytes", "bytes", "frozen adapter tensors held in memory (VeRA's shared pair once, GiVA's "
           "bases)", **_EXACT),
    Column("optimizer_state_bytes", "bytes", "AdamW state after training"),
    Column("adapter_file_bytes", "bytes", "size of the adapter checkpoint actually written (safetensors; PEFT's "
           "save_pretrained for peft:<name>)", **_EXACT, table="adapter file"),
    Column("init_total_s", "s", "wall time of apply_adapter: gradient + SVD + injection (after one untimed "
           "forward and backward pass of the base model, as the training steps' warmup precedes the timed steps)",
           **_INIT, history=True, explained_by=("init_flops", *INIT_OPERATORS), table="init total", progress="init"),
    Column("init_grad_s", "s", "data passes of the init: GiVA's gradient batches; PEFT EVA's and CorDA's forward "
           "passes, LoRA-GA's gradients", **_INIT),
    Column("init_svd_s", "s", "decompositions of the init, all layers: GiVA's gradient SVD (with forming the "
           "gradient from its factors where that pays); PEFT PiSSA's weight SVD, OLoRA's QR, ...", **_INIT),
    Column("init_inject_s", "s", "making the adapter layers, swapping them in and freezing the base"),
    Column("init_peak_mem_bytes", "bytes", "peak memory during init (cuda max allocated on CUDA, process RSS on CPU)",
           **_MEMORY, history=True, explained_by=("init_tensor_peak_bytes",)),
    Column("init_mem_growth_bytes", "bytes", "init_peak_mem_bytes minus the same reading at the start of init"),
    Column("init_flops", "FLOPs", "FLOPs of apply_adapter (torch.utils.flop_counter: matmuls exactly; QR and SVD by "
           "their Golub-Van Loan operation counts): GiVA's gradient pass and bases; 0 for LoRA and VeRA",
           **_EXACT),
    Column("init_share", "fraction", "init_total_s / (init_total_s + train_time_s): the init's share of the point's "
           "whole fine-tuning wall time; accuracy points only (a profile point times a few steps, not a fine-tuning)"),
    Column("init_flops_share", "fraction", "init_flops / (init_flops + init_share_steps * flops_per_step): the init's "
           "share of a fine-tuning run's FLOPs (0 for an init that reads no data)"),
    Column("init_share_steps", "count", "training steps of the fine-tuning run init_flops_share assumes"),
    Column("init_share_steps_source", "text", "where init_share_steps comes from: 'point' (the point's own training "
           "steps: train_steps measured, the sweep's steps estimated) or 'assumed' (`estimate --assume-steps`)"),
    Column("init_tensor_peak_bytes", "bytes", "peak of the tensor bytes alive during apply_adapter (model included), "
           "tracked tensor by tensor", **_EXACT),
    Column("warmup_steps", "count", "training steps run before timing"),
    Column("timed_steps", "count", "training steps timed (forward, backward, clip, AdamW, schedule)"),
    Column("step_time_ms_p50", "ms", "median step time", better="lower", compare="steps", threshold="10%",
           history_threshold="5%",
           history=True, explained_by=("flops_per_step", *STEP_OPERATORS), table="step p50", progress="step"),
    Column("step_time_ms_p90", "ms", "90th percentile step time", history=True),
    Column("step_time_ms_mean", "ms", "mean step time"),
    Column("step_time_ms_min", "ms", "fastest step"),
    Column("step_times_ms", "text", "every timed step, ';'-separated, for noise-aware comparison"),
    Column("tokens_per_s", "tokens/s", "tokens of a batch / median step time: batch_size * seq_len (an upper bound "
           "where batches are padded to their longest), for image tasks batch_size * the patch tokens of an image "
           "([CLS] included; 1 a model without patches)", better="higher", compare="steps",
           threshold="10%", history=True),
    Column("peak_mem_bytes", "bytes", "peak memory during the timed training steps (cuda max allocated on CUDA, RSS "
           "on CPU)", **_MEMORY, history=True, table="peak mem", progress="peak",
           explained_by=("tensor_peak_bytes",)),
    Column("mem_growth_bytes", "bytes", "peak_mem_bytes minus the same reading at the start of training"),
    Column("peak_mem_source", "text", "what peak_mem_bytes read: cuda_max_allocated or rss"),
    Column("peak_rss_bytes", "bytes", "process peak RSS during training, sampled"),
    Column("cuda_max_allocated_bytes", "bytes", "torch.cuda.max_memory_allocated during training"),
    Column("cuda_max_reserved_bytes", "bytes", "torch.cuda.max_memory_reserved during training"),
    Column("nvml_peak_used_bytes", "bytes", "device memory used (NVML, all processes), sampled peak during training"),
    # One extra, untimed training step after the timed ones (bench/measure/counters.py), the same in `estimate`.
    Column("flops_per_step", "FLOPs", "FLOPs of one training step, forward and backward (torch.utils.flop_counter: "
           "matmuls, attention, convolutions; elementwise ops and the optimizer are not counted)", **_EXACT,
           table="FLOPs/step", progress="flops"),
    Column("adapter_flops_per_step", "FLOPs", "the part of flops_per_step spent inside adapter layers beyond their "
           "base layer (the adapters' own forward and backward)", **_EXACT),
    Column("tensor_params_bytes", "bytes", "parameters alive at the step's tensor peak (base, adapter, head)",
           **_EXACT),
    Column("tensor_buffers_bytes", "bytes", "module buffers at the peak (adapter bases, rotary tables)", **_EXACT),
    Column("tensor_grads_bytes", "bytes", "parameter gradients at the peak", **_EXACT),
    Column("tensor_optimizer_bytes", "bytes", "optimizer state at the peak (AdamW: two fp32 moments per trainable "
           "parameter and a step count)", **_EXACT),
    Column("tensor_activations_bytes", "bytes", "tensors made in the forward pass and alive at the peak (saved for "
           "backward), inputs included", **_EXACT),
    Column("tensor_temp_bytes", "bytes", "other tensors made in the backward pass and alive at the peak (gradients "
           "of activations, workspaces)", **_EXACT),
    Column("tensor_peak_bytes", "bytes", "peak of the tensor bytes alive during one training step (the sum of the "
           "tensor_* categories at that moment; torch.distributed._tools.mem_tracker); on a GPU the "
           "tensors' share of torch.cuda.max_memory_allocated (which adds allocator rounding and library workspaces)", **_EXACT, table="tensor peak",
           progress="tensors"),
    *operator_columns(init=False),
    Column("aten_ops_by_op", "text", "aten_ops_per_step by operator, most calls first: 'mm:84;view:80;...' (compare "
           "names the operators behind a change of aten_ops_per_step)"),
    *operator_columns(init=True),
    Column(COUNTED_BY, "text", "the torch version that counted the operator-level columns (aten_ops_*, copies, "
           "allocations, syncs): its decompositions decide them, so compare and the history do not compare them "
           "across torch versions"),
    Column("cost_trace_s", "s", "wall time of the untimed FLOP and memory trace (init and step; in `estimate` the "
           "whole fake trace)"),
    Column("cost_trace_batch", "text", "BxT of the batch the step's FLOPs and tensor bytes were traced on: the task's "
           "own, the one after the training steps (T is its longest text's with padding='longest'); 'as profile' "
           "where `estimate` traced a task it cannot set up without weights (planted) as the profile task's random "
           "tokens at the point's shapes"),
    Column("eval_metric", "text", "the task's own metric, what eval_score holds: accuracy, f1, matthews, pearson or "
           "spearman (GLUE's convention per task: matthews for cola, pearson for stsb, else accuracy; or task option "
           "metric)"),
    Column("eval_score_before", "score", "eval_metric of the adapted model before training (= base model)"),
    Column("eval_score", "score", "eval_metric after the last step", better="higher", compare="accuracy", threshold="1pt",
           history=True, table="eval score"),
    Column("eval_score_best", "score", "best eval_metric over the evaluations"),
    Column("eval_scores", "text", "JSON {metric: value} after the last step, every metric that fits the task "
           "(binary: accuracy, f1, matthews; multiclass: accuracy, matthews; regression: pearson, spearman)"),
    Column("eval_examples", "count", "eval examples scored at each evaluation (planted: predictions compared, tokens "
           "for decoders)"),
    Column("eval_accuracy_before", "fraction", "eval accuracy of the adapted model before training (= base model); "
           "empty where accuracy does not fit the task (regression)"),
    Column("eval_accuracy", "fraction", "eval accuracy after the last step", better="higher", compare="accuracy",
           threshold="1pt", history=True),  # the summary shows it as eval_score (the task's metric)
    Column("eval_accuracy_best", "fraction", "best eval accuracy over the evaluations"),
    Column("eval_loss", "", "eval loss after the last step"),
    Column("image_transform", "text", "image tasks: how images became pixels (the checkpoint's image processor and "
           "its settings, or the plain resize and normalization used where it has none; the training augmentation)"),
    Column("answer_rule", "text", "gen: tasks: how the answer is read out of the generated text and when it counts as "
           "right (bench/tasks/answers.py), stated in full"),
    Column("decoding", "text", "gen: tasks: JSON of the decoding settings (greedy unless set: max_new_tokens, "
           "num_beams, do_sample, temperature, top_p, top_k, repetition_penalty, stop strings)"),
    Column("gen_time_s", "s", "gen: tasks: wall time of generating the answers to the eval questions at the last "
           "evaluation (device synchronized), apart from train_time_s and the step times"),
    Column("gen_new_tokens", "count", "gen: tasks: tokens generated at the last evaluation (up to each answer's "
           "end-of-sequence token)"),
    Column("train_steps", "count", "training steps run in all (warmup and timed included)"),
    Column("lr", "", "peak learning rate of the adapter parameters (after warmup); the method's default unless set"),
    Column("head_lr", "", "peak learning rate of the trained head (trainable_modules); empty when nothing else trains"),
    Column("train_time_s", "s", "training wall time, evaluation excluded"),
    Column("started_at", "text", "UTC time the point started"),
    Column("point_wall_s", "s", "wall time of the whole point, model loading included"),
    # How busy the machine was (bench/measure/load.py): a timing taken with the load above the core count is marked
    # in the summary, and compare will not call it a regression against a run taken at another load.
    Column("load_avg_1m_start", "", "1-minute load average of the machine when the point started (runnable "
           "threads, all processes; above the core count = busy)"),
    Column("load_avg_1m_end", "", "1-minute load average of the machine when the point ended"),
    Column("cpu_steal_s", "s", "CPU time the hypervisor gave to other machines while the point ran, all CPUs "
           "(/proc/stat's steal); empty where the kernel does not report it"),
    Column("ctx_switches_involuntary", "count", "times the point's process was preempted while the point ran "
           "(involuntary context switches): other work took its core"),
]
COLUMN_NAMES = [c.name for c in COLUMNS]
BY_NAME = {c.name: c for c in COLUMNS}
TEXT_COLUMNS = [c.name for c in COLUMNS if c.is_text]
NUMERIC_COLUMNS = [c.name for c in COLUMNS if not c.is_text]
COMPARED = [c for c in COLUMNS if c.compare]
HISTORY_METRICS = [c.name for c in COLUMNS if c.history]
TABLE = [c for c in COLUMNS if c.table]
PROGRESS = [c for c in COLUMNS if c.progress]
IDENTITY = [c.name for c in COLUMNS if c.identity]  # what a point is: its row's configuration columns
TORCH_COUNTED = [c.name for c in COLUMNS if c.torch_counted]
TENSOR_CATEGORIES = [  # (column, category) of the memory breakdown, in stacking order
    ("tensor_params_bytes", "parameters"), ("tensor_buffers_bytes", "buffers"), ("tensor_grads_bytes", "gradients"),
    ("tensor_optimizer_bytes", "optimizer state"), ("tensor_activations_bytes", "activations"),
    ("tensor_temp_bytes", "temporaries")]
assert len(set(COLUMN_NAMES)) == len(COLUMN_NAMES), "a column is listed twice"


def parse_limit(text: str) -> tuple[float, bool] | None:
    """A threshold's limit: '10%' -> (0.1, relative), '1pt' -> (0.01, absolute: points of a fraction), '0.5' -> (0.5,
    absolute, in the metric's unit); None when the text is no limit."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%|pt)?\s*", text)
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2)
    return (number / 100.0, unit == "%") if unit else (number, False)


def by_op_counts(text: str) -> dict[str, int]:
    """aten_ops_by_op's text ('mm:84;view:80') -> {operator: calls}."""
    return {name: int(n) for name, _, n in (part.rpartition(":") for part in text.split(";") if part)}


def column(name: str) -> Column:
    if name not in BY_NAME:
        raise ValueError(f"unknown column {name!r}; the columns are in bench/SCHEMA.md")
    return BY_NAME[name]


def schema_markdown() -> str:
    """bench/SCHEMA.md (a test keeps the file equal to this)."""
    lines = [f"# results.csv, schema version {SCHEMA_VERSION}", "",
             "One row per sweep point, written and flushed when the point ends. Units are in the names: "
             "`_s` seconds, `_ms` milliseconds, `_bytes` bytes, `_params` parameter counts, `flops` floating-point "
             "operations (a multiply-add counts 2). An empty cell means not measured (for example accuracy in a "
             "`profile` run, CUDA columns on CPU, timings of an estimated row). "
             "Generated from `bench/columns.py` by `python -m bench.columns > bench/SCHEMA.md`.", "",
             "Compared by `run_bench.py compare`: **exact** = any change is flagged, with its size; "
             "**noisy** = worse by more than the threshold and the noise floor; **steps** = worse by more than the "
             "threshold, with the whole 99% bootstrap interval of the ratio of medians (from the raw step times) "
             "beyond it; **accuracy** = worse by more than the threshold in points.", "",
             "| column | unit | meaning | compared |", "|---|---|---|---|"]
    for c in COLUMNS:
        how = c.compare
        if c.compare in ("noisy", "steps", "accuracy"):
            how += f", {c.better} is better, {c.threshold}" + (f" (history {c.history_threshold})"
                                                                 if c.history_threshold else "")
            floor = c.floor or c.floor_rss
            if floor:
                unit = f"{floor / MIB:g} MiB" if c.unit == "bytes" else f"{floor:g} {c.unit}"
                how += f" (floor {unit}{' when read as RSS' if c.floor_rss else ''})"
        lines.append(f"| `{c.name}` | {c.unit if c.unit != 'text' else 'text'} | {c.meaning} | {how} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(schema_markdown(), end="")
