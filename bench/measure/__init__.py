"""Measuring a point: clocks (synchronized step timing), memory (per-phase peaks), counters (FLOPs and tensor bytes),
load (how busy the machine was)."""
