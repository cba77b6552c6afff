#!/usr/bin/env python
"""Benchmark LoRA, VeRA and GiVA. `python run_bench.py --help`; no arguments runs the quick preset."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
