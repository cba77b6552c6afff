"""GiVA's stacked decompositions two ways, alternating in one process at two threads: everything on one thread (as
before) against giva.giva.DecompositionThreads (QRs and small SVDs on one thread, products with G on the caller's).

    .venv/bin/python tests/benchmarks/decomposition_threads.py [--rounds 7]

Random stacks of the shapes MiniLM's and llama-140m's targets give (r 8, q 32); prints the median and range of each
way and whether their bases are equal to the last bit.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from giva.giva import DecompositionThreads, GivaConfig, stacked_bases

SHAPES = {"minilm": [(24, 384, 384), (6, 1536, 384), (6, 384, 1536)],
          "llama-140m": [(36, 768, 768), (12, 2048, 768), (12, 768, 2048)]}


def all_on_one_thread(stacks, config):
    torch.set_num_threads(1)
    try:
        return [stacked_bases(G, config.r, config) for G in stacks]
    finally:
        torch.set_num_threads(2)


def products_on_the_callers(stacks, config):
    threads, bases = DecompositionThreads(torch.device("cpu")), []
    for G in stacks:
        with threads.run():
            bases.append(stacked_bases(G, config.r, config, threads.matmul))
    return bases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = GivaConfig(r=8)
    ways = {"one thread": all_on_one_thread, "products on 2": products_on_the_callers}
    for name, shapes in SHAPES.items():
        stacks = [torch.randn(*shape) for shape in shapes]
        times = {way: [] for way in ways}
        for round_ in range(args.rounds):
            for way in list(ways) if round_ % 2 == 0 else list(ways)[::-1]:
                start = time.perf_counter()
                ways[way](stacks, config)
                times[way].append((time.perf_counter() - start) * 1e3)
        first, second = (ways[way](stacks, config) for way in ways)
        same = all(torch.equal(a, b) for x, y in zip(first, second) for a, b in zip(x, y))
        print(name, "  ".join(f"{way}: {statistics.median(t):.0f} ms ({min(t):.0f}-{max(t):.0f})"
                              for way, t in times.items()), f"  bases equal to the bit: {same}")


if __name__ == "__main__":
    main()
