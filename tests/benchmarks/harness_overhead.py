"""How much the harness's training loop adds to a step: bench.run.train.train versus a bare loop.

    .venv/bin/python tests/benchmarks/harness_overhead.py [--model minilm --task sst2 --data-dir ../shared/data]

Same adapted model, same batches, same optimizer settings, in alternating rounds so
that machine noise hits both alike. The harness runs as a point does, with the untimed
FLOP and memory trace after its timed steps (train(trace_step=True)), and once more without it,
so the ratios show the harness's overhead (goal: < 1.02) and whether the trace changes the
timed steps (goal: 1.00 within noise).
"""

import argparse
import statistics
import time

import torch

from bench.tasks import setup_task
from bench.config.train import TrainSettings
from bench.run.train import train
from giva import apply_adapter, batch_loss, make_config


def bare_steps(model, batches, loss_fn, steps, lr):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    times = []
    for _ in range(steps):
        batch = next(batches)
        start = time.perf_counter()
        loss = batch_loss(model, batch, loss_fn)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-12m")
    parser.add_argument("--task", default="profile")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--method", default="lora")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round and loop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = setup_task(args.task, args.model, batch_size=args.batch_size, seq_len=args.seq_len, seed=0,
                       data_dir=args.data_dir)
    config = make_config(args.method, r=args.rank, trainable_modules=setup.trainable_modules)
    data = [next(setup.train_batches)] if args.method == "giva" else None
    apply_adapter(setup.model, config, data=data, loss_fn=setup.loss_fn)
    setup.evaluate = None  # time steps only
    times = {"traced": [], "untraced": [], "bare": []}  # harness with / without the untimed trace, bare loop
    trace_s = []
    settings = TrainSettings(steps=args.steps + 2, lr=1e-4, warmup_ratio=0.0, schedule="constant")
    for i in range(args.rounds):
        for loop in [*times][i % 3:] + [*times][:i % 3]:  # rotate the order: no loop always goes first
            if loop == "bare":
                times[loop] += bare_steps(setup.model, setup.train_batches, setup.loss_fn, args.steps + 2, 1e-4)[2:]
                continue
            result = train(setup.model, setup, settings, method=args.method, device="cpu",
                           trace_step=loop == "traced")
            times[loop] += result.step_times_ms[2:]
            trace_s += [result.step_costs.trace_s] if result.step_costs else []
    t, u, b = (statistics.median(times[k]) for k in times)
    print(f"{args.model} {args.task} {args.method} r={args.rank} batch {args.batch_size}x{args.seq_len}, "
          f"{len(times['bare'])} steps each, {args.threads} thread(s): median step of the harness {t:.2f} ms with the "
          f"untimed trace, {u:.2f} ms without, bare loop {b:.2f} ms; harness / bare {t / b:.4f}, with / without "
          f"trace {t / u:.4f}; the trace after each round took {statistics.median(trace_s):.2f} s (median)")

if __name__ == "__main__":
    main()
