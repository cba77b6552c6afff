"""Results on disk: written (write.py) and read back (read.py) by separate code, a run directory's safety
(rundir.py), and what produced them (environment.py). Imports nothing of bench but bench.columns, and no torch."""
