"""results.csv: the versioned column schema, append-and-flush rows, resume, and meta.json."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata

SCHEMA_VERSION = 2  # 2: lr and head_lr columns
RESULTS_FILE = "results.csv"
META_FILE = "meta.json"

# (column, meaning). Units are in the names: _s seconds, _ms milliseconds,
# _bytes bytes, _params counts of scalars. Empty cell = not measured.
COLUMNS = [
    ("schema_version", "version of this column list; compare refuses to mix versions"),
    ("point_id", "stable hash of the point's configuration (model, task, method, options, rank, seed, shapes, device)"),
    ("status", "ok, failed or skipped"),
    ("error", "one-line reason when failed or skipped"),
    ("model", "model registry name"),
    ("task", "'profile' (synthetic batches, timing only) or a task name"),
    ("method", "lora, vera or giva"),
    ("rank", "configured rank r"),
    ("method_options", "JSON of the method's options (alpha, d_initial, basis, num_grad_batches, ...)"),
    ("seed", "the sweep seed: model init, data order, and the adapter's random parts unless its options fix them"),
    ("adapter_seed", "seed of the adapter's random parts (GiVA's B and SVD sketch, VeRA's projections); empty for LoRA"),
    ("batch_size", "examples per step"),
    ("seq_len", "tokens per example"),
    ("dtype", "model dtype"),
    ("device", "cpu or cuda:N"),
    ("model_params", "parameters of the base model before adaptation"),
    ("trainable_params", "parameters the optimizer updates (adapter plus any trained head)"),
    ("adapter_params", "trainable parameters inside the adapter layers (METHODS.md formulas)"),
    ("total_params", "parameters of the adapted model"),
    ("adapted_layers", "number of layers that got an adapter"),
    ("rank_min", "smallest effective rank over adapted layers"),
    ("rank_max", "largest effective rank over adapted layers"),
    ("capped_layers", "layers whose rank was capped below r (GiVA: min(out, in))"),
    ("effective_ranks", "JSON {layer: rank} of the capped layers only; empty when none was capped"),
    ("adapter_buffer_bytes", "frozen adapter tensors held in memory (VeRA's shared pair once, GiVA's bases)"),
    ("optimizer_state_bytes", "AdamW state after training"),
    ("adapter_file_bytes", "size of the adapter checkpoint actually written (safetensors)"),
    ("init_total_s", "wall time of apply_adapter: gradient + SVD + injection"),
    ("init_grad_s", "GiVA: forward/backward over the gradient batches"),
    ("init_svd_s", "GiVA: SVD and bases, all layers"),
    ("init_inject_s", "making the adapter layers, swapping them in and freezing the base"),
    ("init_peak_mem_bytes", "peak memory during init (cuda max allocated on CUDA, process RSS on CPU)"),
    ("init_mem_growth_bytes", "init_peak_mem_bytes minus the same reading at the start of init"),
    ("warmup_steps", "training steps run before timing"),
    ("timed_steps", "training steps timed (forward, backward, clip, AdamW, schedule)"),
    ("step_time_ms_p50", "median step time"),
    ("step_time_ms_p90", "90th percentile step time"),
    ("step_time_ms_mean", "mean step time"),
    ("step_time_ms_min", "fastest step"),
    ("step_times_ms", "every timed step, ';'-separated, for noise-aware comparison"),
    ("tokens_per_s", "batch_size * seq_len / median step time"),
    ("peak_mem_bytes", "peak memory during the timed training steps (cuda max allocated on CUDA, RSS on CPU)"),
    ("mem_growth_bytes", "peak_mem_bytes minus the same reading at the start of training"),
    ("peak_mem_source", "what peak_mem_bytes read: cuda_max_allocated or rss"),
    ("peak_rss_bytes", "process peak RSS during training, sampled"),
    ("cuda_max_allocated_bytes", "torch.cuda.max_memory_allocated during training"),
    ("cuda_max_reserved_bytes", "torch.cuda.max_memory_reserved during training"),
    ("nvml_peak_used_bytes", "device memory used (NVML, all processes), sampled peak during training"),
    ("eval_examples", "number of examples the eval metric was computed on"),
    ("eval_accuracy_before", "eval accuracy of the adapted model before training (= base model)"),
    ("eval_accuracy", "eval accuracy after the last step"),
    ("eval_accuracy_best", "best eval accuracy over the evaluations"),
    ("eval_loss", "eval loss after the last step"),
    ("train_steps", "training steps run in all (warmup and timed included)"),
    ("lr", "peak learning rate of the adapter parameters (after warmup); the method's default unless set"),
    ("head_lr", "peak learning rate of the trained head (trainable_modules); empty when nothing else trains"),
    ("train_time_s", "training wall time, evaluation excluded"),
    ("started_at", "UTC time the point started"),
    ("point_wall_s", "wall time of the whole point, model loading included"),
]
COLUMN_NAMES = [name for name, _ in COLUMNS]


def read_rows(path: str) -> list[dict]:
    """Rows of a results.csv (all cells as strings); a missing file gives no rows."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def done_point_ids(run_dir: str) -> set[str]:
    """Points already recorded, whatever their status: a resumed sweep skips them."""
    return {r["point_id"] for r in read_rows(os.path.join(run_dir, RESULTS_FILE))}


def drop_failed_rows(run_dir: str) -> int:
    """Remove failed rows (atomic rewrite) so that a resumed sweep runs those points again."""
    path = os.path.join(run_dir, RESULTS_FILE)
    rows = read_rows(path)
    kept = [r for r in rows if r.get("status") != "failed"]
    if len(kept) < len(rows):
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            f.write(_csv_line({c: c for c in COLUMN_NAMES}))
            f.writelines(_csv_line(r) for r in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return len(rows) - len(kept)


def append_row(run_dir: str, row: dict) -> None:
    """Append one row and fsync it, so a killed sweep never leaves a torn row behind."""
    unknown = set(row) - set(COLUMN_NAMES)
    if unknown:
        raise ValueError(f"row has columns outside the schema: {sorted(unknown)}")
    path = os.path.join(run_dir, RESULTS_FILE)
    _drop_torn_tail(path)
    new_file = not os.path.exists(path) or os.path.getsize(path) == 0
    line = _csv_line({**row, "schema_version": SCHEMA_VERSION})
    with open(path, "a", newline="") as f:
        if new_file:
            f.write(_csv_line({c: c for c in COLUMN_NAMES}))
        f.write(line)  # one write of one whole line
        f.flush()
        os.fsync(f.fileno())


def latest_rows(rows: list[dict]) -> list[dict]:
    """One row per point_id, the last one written (rows appended by hand or merged runs)."""
    latest = {}
    for row in rows:
        latest[row["point_id"]] = row
    return list(latest.values())


def _csv_line(row: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if row.get(c) is None else row.get(c) for c in COLUMN_NAMES])
    return buf.getvalue()


def _drop_torn_tail(path: str) -> None:
    """A kill during a write can leave a last line without its newline: cut it off."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def git_info() -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    return {"commit": commit or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None}


def environment_info(device: str) -> dict:
    """Versions, device and CPU: what produced a result file."""
    import torch

    versions = {}
    for package in ("torch", "transformers", "peft", "pandas", "psutil", "nvidia-ml-py", "giva-bench"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "versions": versions,
        **git_info(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_meta(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, META_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_meta(run_dir: str, meta: dict) -> None:
    """Write meta.json atomically (temp file, then rename)."""
    path = os.path.join(run_dir, META_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def schema_markdown() -> str:
    """The column table of bench/SCHEMA.md (a test keeps the file equal to this)."""
    lines = [f"# results.csv, schema version {SCHEMA_VERSION}", "",
             "One row per sweep point, written and flushed when the point ends. Units are in the names: "
             "`_s` seconds, `_ms` milliseconds, `_bytes` bytes, `_params` parameter counts. "
             "An empty cell means not measured (for example accuracy in a `profile` run, CUDA columns on CPU). "
             "Generated from `bench/results.py` by `python -m bench.results > bench/SCHEMA.md`.", "",
             "| column | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in COLUMNS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(schema_markdown(), end="")
