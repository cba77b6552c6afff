"""Does the tracked tensor peak explain the process's RSS growth during training? (an independent reading, CPU)

    cat > rss140.toml <<EOF
    models = ["llama-140m"]
    tasks = ["profile"]
    methods = ["lora", "vera", "giva"]
    ranks = [8]
    batch_sizes = [8]
    seq_lens = [128]
    warmup_steps = 1
    timed_steps = 2
    threads = 1
    EOF
    MALLOC_MMAP_THRESHOLD_=65536 .venv/bin/python run_bench.py run --config rss140.toml --out reports/runs/rss140 --no-report
    .venv/bin/python tests/benchmarks/rss_vs_tracked.py reports/runs/rss140

At the start of training the model's parameters and buffers are already resident, so the
growth to explain is tensor_peak_bytes - tensor_params_bytes - tensor_buffers_bytes (goal:
within 15%). glibc keeps freed heap memory for reuse, so without MALLOC_MMAP_THRESHOLD_ (large
blocks mapped and unmapped one by one) RSS grows past the live tensors; and after GiVA's init
the allocator reuses what its gradient pass freed, so GiVA's training grows RSS less.
"""

import sys

from bench.results.read import load_run

MIB = 2**20


def main(run_dir: str) -> None:
    rows = load_run(run_dir).rows
    for _, r in rows[rows["status"] == "ok"].iterrows():
        expected = r["tensor_peak_bytes"] - r["tensor_params_bytes"] - r["tensor_buffers_bytes"]
        print(f"{r['model']} {r['method']} r{r['rank']}: RSS growth {r['mem_growth_bytes'] / MIB:,.0f} MiB, "
              f"tracked peak less params and buffers {expected / MIB:,.0f} MiB, ratio "
              f"{r['mem_growth_bytes'] / expected:.3f} (tensor peak {r['tensor_peak_bytes'] / MIB:,.0f} MiB, "
              f"peak RSS {r['peak_rss_bytes'] / MIB:,.0f} MiB)")


if __name__ == "__main__":
    main(sys.argv[1])
