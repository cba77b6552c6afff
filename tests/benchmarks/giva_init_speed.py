"""GiVA's init on MiniLM (batch 16 x 64, fp32) by phase, as a multiple of a LoRA r8 training step, for this
checkout's giva/ and, in the same process, another commit's (default: the base of issue 13's work).

    .venv/bin/python tests/benchmarks/giva_init_speed.py [--rounds 7] [--threads 1] [--base f26e3e7]

The machine is shared, so every round times one LoRA step, then the base's init, then this checkout's
(the order alternates), and medians over rounds are reported; the first round is dropped. It also checks
that both inits give the same bases (smallest principal-angle cosine over layers, for A and for B).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import giva  # noqa: E402
from giva.targets import BERT_TARGETS  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "benchmarks"))
from compare_peft_speed import load_minilm, make_batch, train_step  # noqa: E402


def import_base(commit: str):
    """The giva package of `commit`, importable beside this checkout's as `giva_base`."""
    folder = tempfile.mkdtemp(prefix="giva-base-")
    archive = subprocess.run(["git", "archive", commit, "giva"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    os.rename(os.path.join(folder, "giva"), os.path.join(folder, "giva_base"))
    sys.path.insert(0, folder)
    return importlib.import_module("giva_base")


def init_phases(package, model, batch) -> tuple[dict, dict]:
    """Seconds by phase (grad, svd, inject, total) of one GiVA r8 init, and the layers' (A, B)."""
    model = copy.deepcopy(model)
    torch.manual_seed(0)
    start = time.perf_counter()
    package.apply_adapter(model, package.GivaConfig(r=8, target_modules=BERT_TARGETS), data=[batch])
    total = time.perf_counter() - start
    stats = package.adapter_stats(model)
    phases = {"grad": stats["init_grad_s"], "svd": stats["init_svd_s"], "inject": stats["init_inject_s"], "total": total}
    bases = {name: (layer.giva_A, layer.giva_B) for name, layer in model.giva_adapter.layers.items()}
    return phases, bases


def min_cosine(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Smallest cosine of the principal angles between the column spaces (orthonormalised first)."""
    return torch.linalg.svdvals(torch.linalg.qr(X).Q.T @ torch.linalg.qr(Y).Q).min().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--base", default="f26e3e7", help="commit to compare with")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base_package = import_base(args.base)
    model, batch = load_minilm(), make_batch()
    lora = giva.apply_adapter(copy.deepcopy(model), giva.LoraConfig(r=8, alpha=16, target_modules=BERT_TARGETS))
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-3)
    variants = {"base": base_package, "now": giva}
    step_s, phases = [], {name: [] for name in variants}
    for round_ in range(args.rounds + 1):
        step_s.append(statistics.median(train_step(lora, optimizer, batch) for _ in range(3)))
        for name in (list(variants) if round_ % 2 else list(variants)[::-1]):
            phases[name].append(init_phases(variants[name], model, batch)[0])
    step = statistics.median(step_s[1:])
    print(f"MiniLM, batch 16 x 64, fp32, {args.threads} thread(s), {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}; LoRA r8 step {step * 1000:.0f} ms (median)")
    print("| init phase | " + " | ".join(f"{name} (s) | {name} (LoRA steps)" for name in variants) + " |")
    print("|---|" + "---:|" * 2 * len(variants))
    for phase in ("grad", "svd", "inject", "total"):
        cells = []
        for name in variants:
            seconds = statistics.median(p[phase] for p in phases[name][1:])
            cells += [f"{seconds:.3f}", f"{seconds / step:.2f}"]
        print(f"| {phase} | " + " | ".join(cells) + " |")
    _, base_bases = init_phases(base_package, model, batch)
    _, now_bases = init_phases(giva, model, batch)
    worst_A = min(min_cosine(base_bases[n][0].T, now_bases[n][0].T) for n in now_bases)
    worst_B = min(min_cosine(base_bases[n][1], now_bases[n][1]) for n in now_bases)
    print(f"bases against {args.base}: smallest principal-angle cosine A {worst_A:.7f}, B {worst_B:.7f}")


if __name__ == "__main__":
    main()
