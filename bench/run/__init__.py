"""Running a sweep: the driver (sweep.py), the checks before it (checks.py), one point measured (point.py) or traced
(estimate.py), the training loop (train.py), the one row builder (rows.py), and the executors that place points."""
