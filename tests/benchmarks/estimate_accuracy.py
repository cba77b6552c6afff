"""How well `run_bench.py estimate` (FakeTensorMode) predicts a real point's traced FLOPs and tensor peak.

    .venv/bin/python tests/benchmarks/estimate_accuracy.py [--models llama-2m,llama-12m,llama-50m,minilm]

Each point (profile task, every method) is run for real in this process (bench.point.run_point,
one warmup and two timed steps, then the untimed traced step and init) and estimated
(bench.estimate.estimate_point); prints FLOPs (goal: equal) and the tensor peaks of the step
and of init (goal: within 5%), and each side's wall time.
"""

import argparse
import tempfile

import torch

from bench.config.grid import expand_grid
from bench.config.presets import make_sweep_config
from bench.run.estimate import estimate_point
from bench.run.point import run_point


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="llama-2m,llama-12m,llama-50m,minilm")
    parser.add_argument("--methods", default="lora,vera,giva")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = make_sweep_config(None, overrides=dict(
        models=args.models.split(","), methods=args.methods.split(","), ranks=[args.rank], tasks=["profile"],
        batch_sizes=[args.batch_size], seq_lens=[args.seq_len], warmup_steps=1, timed_steps=2,
        threads=args.threads, method_options={}))
    print(f"{'point':32s} {'FLOPs/step':>16s} {'equal':>5s} {'init FLOPs eq':>13s} {'step peak MiB real/est':>24s} "
          f"{'ratio':>6s} {'init peak MiB real/est':>24s} {'ratio':>6s} {'wall s real/est':>16s}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as run_dir:
        for point in expand_grid(config):
            real, est = run_point(point, run_dir), estimate_point(point)
            if real["status"] != "ok" or est["status"] != "ok":
                print(f"{point.label}: real {real['status']} {real['error']}; estimate {est['status']} {est['error']}")
                continue
            step_ratio = est["tensor_peak_bytes"] / real["tensor_peak_bytes"]
            init_ratio = est["init_tensor_peak_bytes"] / real["init_tensor_peak_bytes"]
            worst = max(worst, abs(step_ratio - 1), abs(init_ratio - 1))
            mib = 2**20
            print(f"{point.model + ' ' + point.method + ' r' + str(point.rank):32s} {real['flops_per_step']:16,d} "
                  f"{str(est['flops_per_step'] == real['flops_per_step']):>5s} "
                  f"{str(est['init_flops'] == real['init_flops']):>13s} "
                  f"{real['tensor_peak_bytes'] / mib:11.2f}/{est['tensor_peak_bytes'] / mib:<12.2f} {step_ratio:6.4f} "
                  f"{real['init_tensor_peak_bytes'] / mib:11.2f}/{est['init_tensor_peak_bytes'] / mib:<12.2f} "
                  f"{init_ratio:6.4f} {real['point_wall_s']:7.1f}/{est['point_wall_s']:<8.1f}")
    print(f"largest tensor-peak deviation: {worst:.2%} ({args.threads} thread(s))")


if __name__ == "__main__":
    main()
