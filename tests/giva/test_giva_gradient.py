"""GiVA's gradient and bases: a planted gradient, exactly N averaged batches, no state left behind."""

from __future__ import annotations

import os
import sys
import time

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from giva import GivaConfig, LoraConfig, adapter_stats, apply_adapter, unload_adapter
from giva.giva import BASES, bases_from_gradient
from giva.gradient import LowRankProduct, dense, estimate_gradients

pytestmark = pytest.mark.usefixtures("single_thread")

OUT, IN = 48, 64
SINGULAR = torch.tensor([10.0, 8.0, 6.0, 4.0, 3.0, 2.0])  # distinct, so each singular vector is defined up to sign


def planted_problem(seed: int = 0):
    """A bias-free linear model and one batch whose loss has gradient G = U diag(S) V^T (rank 6) wrt W."""
    generator = torch.Generator().manual_seed(seed)
    k = len(SINGULAR)
    U = torch.linalg.qr(torch.randn(OUT, k, generator=generator)).Q  # (out, k)
    V = torch.linalg.qr(torch.randn(IN, k, generator=generator)).Q  # (in, k)
    model = nn.Sequential(nn.Linear(IN, OUT, bias=False))
    x = SINGULAR[:, None] * V.T  # (k, in): row t is S_t v_t

    def loss_fn(output, batch):  # sum_t u_t . (W x_t)  ->  dL/dW = sum_t u_t x_t^T = U S V^T
        return (output * U.T).sum()

    return model, [x], loss_fn, U, V


def cosines(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the column spaces of A and B (orthonormal columns)."""
    return torch.linalg.svdvals(A.T @ B)


@pytest.mark.parametrize("svd", ["exact", "randomized"])
@pytest.mark.parametrize("basis", BASES)
def test_bases_from_a_planted_gradient(basis, svd):
    r = 2
    model, batches, loss_fn, U, V = planted_problem()
    apply_adapter(model, GivaConfig(r=r, basis=basis, svd=svd, target_modules=["0"]), data=batches, loss_fn=loss_fn)
    layer = model[0]
    A, B = layer.giva_A, layer.giva_B
    assert A.shape == (r, IN) and B.shape == (OUT, r)
    torch.testing.assert_close(A @ A.T, torch.eye(r), atol=1e-5, rtol=0)
    torch.testing.assert_close(cosines(A.T, V[:, :r]), torch.ones(r), atol=1e-4, rtol=0)  # top-r right subspace
    if basis == "VrUr":
        torch.testing.assert_close((B * U[:, :r]).sum(0).abs(), torch.ones(r), atol=1e-4, rtol=0)
    elif basis == "VrU2r":
        torch.testing.assert_close((B * U[:, r:2 * r]).sum(0).abs(), torch.ones(r), atol=1e-4, rtol=0)
    elif basis == "Vr":
        torch.testing.assert_close(B.T @ B, torch.eye(r), atol=1e-5, rtol=0)
        assert cosines(B, U[:, :r]).max() < 0.9  # random, not the gradient's left vectors
    else:  # VrUrand: a raw Gaussian
        assert not torch.allclose(B.T @ B, torch.eye(r), atol=0.1)
        assert abs(B.mean()) < 0.3 and 0.7 < B.std() < 1.3


@pytest.mark.parametrize("basis", ["Vr", "VrUrand"])
def test_random_B_is_seeded(basis):
    def B_for(seed):
        model, batches, loss_fn, _, _ = planted_problem()
        apply_adapter(model, GivaConfig(r=2, basis=basis, seed=seed, target_modules=["0"]), data=batches,
                      loss_fn=loss_fn)
        return model[0].giva_B

    assert torch.equal(B_for(0), B_for(0))
    assert not torch.allclose(B_for(0), B_for(1))


def test_randomized_svd_finds_the_top_subspace_of_a_full_rank_gradient():
    generator = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(200, 200, generator=generator)).Q
    V = torch.linalg.qr(torch.randn(300, 200, generator=generator)).Q
    S = 0.8 ** torch.arange(200.0)  # a decaying spectrum, no exact low rank
    G = U * S @ V.T
    r = 8
    A, B = bases_from_gradient("layer", G, r, GivaConfig(r=r, basis="VrUr"))
    assert cosines(A.T, V[:, :r]).min() > 0.99
    assert cosines(B, U[:, :r]).min() > 0.99


class CountingBatches:
    """Yields `available` batches and counts how many were pulled."""

    def __init__(self, batches):
        self.batches, self.pulled = batches, 0

    def __iter__(self):
        for batch in self.batches:
            self.pulled += 1
            yield batch


@pytest.mark.parametrize("num_batches", [1, 3])
def test_uses_exactly_n_batches_and_averages_them(num_batches, tmp_path):
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, OUT, bias=False))
    batches = CountingBatches([torch.randn(5, IN, generator=generator) for _ in range(num_batches + 2)])
    forwards = []
    model[0].register_forward_hook(lambda *_: forwards.append(1))

    def loss_fn(output, batch):
        return output.pow(2).mean()

    manual = torch.zeros(OUT, IN)
    for x in batches.batches[:num_batches]:
        manual += torch.autograd.grad(loss_fn(model(x), x), model[0].weight)[0] / num_batches
    forwards.clear()

    config = GivaConfig(r=3, svd="exact", num_grad_batches=num_batches, target_modules=["0"], grad_cache=str(tmp_path))
    apply_adapter(model, config, data=batches, loss_fn=loss_fn)
    assert batches.pulled == num_batches  # never pulls batch N + 1
    assert len(forwards) == num_batches
    torch.testing.assert_close(load_file(tmp_path / "0.safetensors")["grad"], manual, atol=1e-6, rtol=1e-5)
    V = torch.linalg.svd(manual).Vh[:3].T
    torch.testing.assert_close(cosines(model[0].giva_A.T, V), torch.ones(3), atol=1e-4, rtol=0)


def test_callable_data_is_called_n_times():
    model = planted_problem()[0]
    G = torch.randn(OUT, IN)
    calls = []

    def train_step(m):  # <W, G> through the layer's call: rows W e_i, weighted by G's columns
        calls.append(1)
        return (m(torch.eye(IN)) * G.T).sum()

    apply_adapter(model, GivaConfig(r=2, svd="exact", num_grad_batches=2, target_modules=["0"]), data=train_step)
    assert len(calls) == 2
    torch.testing.assert_close(cosines(model[0].giva_A.T, torch.linalg.svd(G).Vh[:2].T), torch.ones(2),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_name", ["tiny_llama", "tiny_gpt2"])  # GPT-2's Conv1D stores W as (in, out)
def test_cached_gradient_is_the_mean_over_batches(request, model_name, lm_batches, tmp_path):
    model = request.getfixturevalue(model_name)
    config = GivaConfig(r=4, num_grad_batches=2, grad_cache=str(tmp_path), grad_mode="eval")  # the reference: no dropout
    apply_adapter(model, config, data=lm_batches)
    layers = model.giva_adapter.layers
    unload_adapter(model)
    for batch in lm_batches:  # the reference: plain autograd, accumulated
        model(**batch).loss.backward()
    for name, layer in layers.items():
        G = load_file(os.path.join(tmp_path, f"{name}.safetensors"))["grad"]
        weight = layer.base_layer.weight
        expected = (weight.grad if isinstance(layer.base_layer, nn.Linear) else weight.grad.T) / 2
        assert G.shape == (layer.out_features, layer.in_features)
        torch.testing.assert_close(G, expected, atol=1e-6, rtol=1e-4)

    # A second apply with the same layers and batch count reads the cache and needs no gradient pass.
    def no_data(m):
        raise AssertionError("the cache should have been used")

    apply_adapter(model, config, data=no_data)
    for name, layer in model.giva_adapter.layers.items():
        assert torch.equal(layer.giva_A, layers[name].giva_A)


def test_flags_grads_and_autocast_are_restored(tiny_llama, lm_batches):
    model = tiny_llama
    model.model.embed_tokens.weight.requires_grad_(False)
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(False)  # a frozen target
    old_grad = torch.ones_like(model.model.layers[1].self_attn.q_proj.weight)
    model.model.layers[1].self_attn.q_proj.weight.grad = old_grad  # a user's gradient, left alone
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    targets = {n: m for n, m in model.named_modules() if n.endswith(("q_proj", "up_proj"))}
    grads = {}
    for dtype in (torch.bfloat16, None):
        estimate_gradients(model, targets, lm_batches, 2, lambda name, G: grads.setdefault((dtype, name), dense(G)),
                           autocast_dtype=dtype)
        assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
        assert model.model.layers[1].self_attn.q_proj.weight.grad is old_grad
        assert all(p.grad is None for n, p in model.named_parameters() if n != "model.layers.1.self_attn.q_proj.weight")
        assert not torch.is_autocast_enabled("cpu")
        assert "forward" not in vars(model)  # the forward is not wrapped
    assert len(grads) == 2 * len(targets)
    name = "model.layers.0.self_attn.q_proj"
    torch.testing.assert_close(grads[torch.bfloat16, name], grads[None, name], atol=0.1, rtol=0.1)
    assert not torch.equal(grads[torch.bfloat16, name], grads[None, name])  # the bf16 pass did run in bf16
    model.model.layers[1].self_attn.q_proj.weight.grad = None

    apply_adapter(model, GivaConfig(r=4, autocast_dtype="bfloat16"), data=lm_batches)
    assert not torch.is_autocast_enabled("cpu")
    assert model(**lm_batches[0]).logits.dtype == torch.float32  # training after init runs in fp32
    unload_adapter(model)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


class CallClock:
    """A clock that ticks once per Python or C function call (sys.setprofile) in this thread: the share of an
    apply that its phases cover is then the same on every machine, at any load."""

    def __init__(self):
        self.calls = 0

    def __call__(self) -> float:
        return float(self.calls)

    def tick(self, frame, event, arg) -> None:
        if event in ("call", "c_call"):
            self.calls += 1


@pytest.mark.parametrize("config", [GivaConfig(r=4), LoraConfig(r=16)])
def test_timings_are_recorded_and_the_phases_cover_the_init(tiny_llama, lm_batches, config, monkeypatch):
    """Gradient, SVD and injection (making the layers and swapping them in) are recorded, and add up to nearly the
    whole apply, counted in function calls (CallClock as time.perf_counter): only finding the targets and checking
    ranks are left out."""
    data = lm_batches if config.method == "giva" else None
    apply_adapter(tiny_llama, config, data=data)
    stats = adapter_stats(tiny_llama)
    unload_adapter(tiny_llama)
    assert stats["init_inject_s"] > 0
    if config.method == "giva":
        assert stats["init_grad_s"] > 0 and stats["init_svd_s"] > 0

    clock = CallClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    sys.setprofile(clock.tick)
    try:
        start = clock()
        apply_adapter(tiny_llama, config, data=data)
        calls = clock() - start
    finally:
        sys.setprofile(None)
        monkeypatch.undo()
    stats = adapter_stats(tiny_llama)
    phases = stats["init_grad_s"] + stats["init_svd_s"] + stats["init_inject_s"]
    assert 0 < phases <= calls
    assert phases / calls >= 0.7, (phases, calls)


def test_a_failed_run_invalidates_the_cache(tiny_gpt2, lm_batches, tmp_path):
    apply_adapter(tiny_gpt2, GivaConfig(r=4, grad_cache=str(tmp_path)), data=lm_batches)
    unload_adapter(tiny_gpt2)
    assert os.path.exists(tmp_path / "meta.json")
    with pytest.raises(ValueError, match="NaN"):  # not the cached batch count: overwrites some files, then fails
        apply_adapter(tiny_gpt2, GivaConfig(r=4, num_grad_batches=2, grad_cache=str(tmp_path)), data=lm_batches,
                      loss_fn=lambda output, batch: output.logits.sum() * float("nan"))
    assert not os.path.exists(tmp_path / "meta.json")  # so the next run computes G again


@pytest.mark.parametrize("start_in_train_mode", [False, True])
def test_grad_mode_train_takes_the_gradient_with_dropout_and_eval_without(tmp_path, start_in_train_mode):
    """grad_mode="train" (the paper's) is the gradient of the model in train mode under torch's seed,
    "eval" the gradient without dropout; either way every module's own mode comes back."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, IN, generator=generator)

    def fresh():
        torch.manual_seed(0)
        return nn.Sequential(nn.Dropout(0.5), nn.Linear(IN, OUT, bias=False), nn.Dropout(0.1)).train(start_in_train_mode)

    def reference(train: bool) -> torch.Tensor:
        model = fresh().train(train)
        torch.manual_seed(7)
        return torch.autograd.grad(squared_sum(model(x), x), model[1].weight)[0]

    expected = {"train": reference(True), "eval": reference(False)}
    assert (expected["train"] - expected["eval"]).abs().max() > 0.1  # dropout does change the gradient
    for mode in ("train", "eval"):
        model = fresh()
        cache = tmp_path / f"{mode}-{start_in_train_mode}"
        torch.manual_seed(7)
        apply_adapter(model, GivaConfig(r=3, svd="exact", grad_mode=mode, target_modules=["1"], grad_cache=str(cache)),
                      data=[x], loss_fn=squared_sum)
        torch.testing.assert_close(load_file(cache / "1.safetensors")["grad"], expected[mode], atol=1e-5, rtol=1e-5)
        assert [m.training for m in model.modules()] == [start_in_train_mode] * len(list(model.modules()))


def squared_sum(output, batch):
    return output.pow(2).sum()


def test_bases_are_the_authors_svd_lowrank_ones_on_minilm(minilm, minilm_batches, tmp_path, monkeypatch):
    """Layers of one shape are decomposed together (in stacks); each layer's bases stay what the authors' definition
    gives it alone: A spans the top right singular vectors as torch.svd_lowrank(G, q=4r, niter=4) finds them, and
    Vr's B = the QR of a Gaussian drawn from the seed after the sketch. Stacks of one layer (a tiny STACK_BYTES)
    give the same. Directions past a near-tie or at rounding level (a gradient of 8 sequences has rank <= 8 at
    the last layers) are arbitrary for any SVD, so A is compared on the top-k part that is defined: k <= r, the
    last index with sigma_k > 1e-3 sigma_1 and sigma_k > 1.05 sigma_(k+1)."""
    import copy

    import giva.giva as giva_module

    r = 8
    model = copy.deepcopy(minilm)
    config = dict(r=r, num_grad_batches=2, grad_mode="eval")
    apply_adapter(minilm, GivaConfig(**config, grad_cache=str(tmp_path)), data=minilm_batches)
    monkeypatch.setattr(giva_module, "STACK_BYTES", 1)
    apply_adapter(model, GivaConfig(**config), data=minilm_batches)
    layers = minilm.giva_adapter.layers
    compared = 0
    for name, layer in layers.items():
        G = load_file(tmp_path / f"{name}.safetensors")["grad"]
        S = torch.linalg.svdvals(G)
        k = max([i for i in range(1, r + 1) if S[i - 1] > 1e-3 * S[0] and S[i - 1] > 1.05 * S[i]], default=0)
        compared += k
        torch.manual_seed(0)
        _, _, V = torch.svd_lowrank(G, q=4 * r, niter=4)
        exact = torch.linalg.svd(G).Vh[:k].T
        assert cosines(layer.giva_A.T, exact).min() > 0.9999 and cosines(V[:, :r], exact).min() > 0.9999, name
        generator = torch.Generator().manual_seed(0)
        torch.randn(G.shape[1], 4 * r, generator=generator)  # the sketch comes first
        torch.testing.assert_close(layer.giva_B, torch.linalg.qr(torch.randn(G.shape[0], r, generator=generator)).Q)
        alone = model.giva_adapter.layers[name]
        assert cosines(alone.giva_A.T, exact).min() > 0.9999 and torch.equal(alone.giva_B, layer.giva_B)
    assert len(layers) == 36 and compared > 36 * r // 2  # most of the directions are well defined


def well_defined(S: torch.Tensor, r: int) -> int:
    """How many leading singular directions are defined beyond rounding: k <= r, the last index with
    sigma_k > 1e-3 sigma_1 and sigma_k > 1.05 sigma_(k+1) (past a near-tie any SVD may rotate them)."""
    return max([i for i in range(1, r + 1) if S[i - 1] > 1e-3 * S[0] and S[i - 1] > 1.05 * S[i]], default=0)


@pytest.fixture(scope="module")
def llama_2m_batches():
    """llama-2m (hidden 128, MLP 512) and three batches of 2 x 16 tokens: 32 rows per batch, fewer than its widths."""
    from bench.tasks import setup_task

    setup = setup_task("profile", "llama-2m", batch_size=2, seq_len=16, seed=0)
    return setup.model, [next(setup.train_batches) for _ in range(3)]


@pytest.mark.parametrize("num_batches", [1, 3])
@pytest.mark.parametrize("svd", ["randomized", "exact"])
def test_bases_from_the_factors_are_those_of_the_formed_gradient(llama_2m_batches, monkeypatch, svd, num_batches):
    """The gradient is taken as factors dY^T X (inputs and output gradients of each layer, rows stacked over the
    batches) and never formed; the bases from them are those of the formed gradient (giva.giva.keep_factored
    False: the way every layer went before) and span the top singular directions of autograd's dLoss/dW."""
    import copy

    import giva.giva as giva_module

    model, batches = llama_2m_batches
    r = 4
    config = GivaConfig(r=r, basis="VrUr", svd=svd, num_grad_batches=num_batches)  # B: the left vectors
    layers = {}
    for factored in (True, False):
        monkeypatch.setattr(giva_module, "keep_factored", lambda *_, f=factored: f)
        adapted = apply_adapter(copy.deepcopy(model), config, data=batches)
        layers[factored] = adapted.giva_adapter.layers
    reference = copy.deepcopy(model)  # autograd's weight gradients, averaged
    for batch in batches[:num_batches]:
        (reference(**batch).loss / num_batches).backward()
    compared = 0
    for name, layer in layers[True].items():
        G = reference.get_submodule(name).weight.grad
        U, S, Vh = torch.linalg.svd(G)
        k = well_defined(S, r)
        compared += k
        formed = layers[False][name]
        for factored_vectors, formed_vectors, exact in ((layer.giva_A.T, formed.giva_A.T, Vh[:k].T),
                                                        (layer.giva_B, formed.giva_B, U[:, :k])):  # (in | out, r)
            assert cosines(factored_vectors[:, :k], formed_vectors[:, :k]).min() > 0.9999, name
            assert cosines(factored_vectors, exact).min() > 0.9999, name
    assert len(layers[True]) == 10 and compared >= 10 * r // 2


def test_the_factors_of_a_layer_fold_into_its_gradient_past_its_size():
    """Across batches a layer keeps its (dY, X) rows only while they hold fewer numbers than G (out x in)."""
    from giva.gradient import LayerGradient

    generator = torch.Generator().manual_seed(0)
    blocks = [(torch.randn(2, 8, generator=generator), torch.randn(2, 6, generator=generator)) for _ in range(3)]
    gradient = LayerGradient(8, 6)  # G holds 48 numbers; 2 rows hold 28
    gradient.add(*blocks[0])
    gradient.fold_if_larger()
    assert gradient.formed is None and gradient.product().rows == 2
    gradient.add(*blocks[1])
    gradient.fold_if_larger()  # 4 rows hold 56: formed
    assert gradient.formed is not None and gradient.blocks == []
    gradient.add(*blocks[2])
    expected = sum(dY.T @ X for dY, X in blocks)
    torch.testing.assert_close(gradient.result(), expected)
    torch.testing.assert_close(LowRankProduct(*blocks[0]) @ torch.eye(6), blocks[0][0].T @ blocks[0][1])
    torch.testing.assert_close(LowRankProduct(*blocks[0]).mT @ torch.eye(8), blocks[0][1].T @ blocks[0][0])


def test_keep_factored_takes_the_factors_for_few_tokens_on_wide_layers():
    from giva.giva import keep_factored

    def product(rows, out_features, in_features):
        return LowRankProduct(torch.zeros(rows, out_features), torch.zeros(rows, in_features))

    config = GivaConfig(r=8)
    assert keep_factored(product(512, 1024, 1024), 8, config)  # llama-430m, batch 4 x 128
    assert keep_factored(product(1024, 8192, 2048), 8, config)  # llama-1b's MLP, batch 8 x 128
    assert not keep_factored(product(1024, 384, 384), 8, config)  # MiniLM, batch 16 x 64: forming G pays
    assert keep_factored(product(64, 384, 384), 8, GivaConfig(r=8, svd="exact"))
    assert not keep_factored(product(4, 384, 384), 8, GivaConfig(r=8, svd="exact"))  # fewer rows than r


class PreAndLayer(nn.Module):
    """x -> pre -> layer, where `layer` is either called twice (shared weights: its gradient sums both calls'
    dY^T X) or has its input changed in place after it ran."""

    def __init__(self, how: str):
        super().__init__()
        torch.manual_seed(0)
        self.how = how
        self.pre, self.layer = nn.Linear(IN, IN), nn.Linear(IN, IN)

    def forward(self, x):
        h = self.pre(x)
        if self.how == "twice":
            return self.layer(torch.tanh(self.layer(h)))
        y = self.layer(h)
        h.mul_(2)  # the layer's input, after the layer read it
        return y + h


def test_a_layer_called_twice_gets_the_sum_of_both_calls(tmp_path):
    x = torch.randn(6, IN, generator=torch.Generator().manual_seed(0))
    model = PreAndLayer("twice")
    expected = torch.autograd.grad(squared_sum(model(x), x), model.layer.weight)[0]
    apply_adapter(model, GivaConfig(r=3, target_modules=["layer"], grad_cache=str(tmp_path)), data=[x],
                  loss_fn=squared_sum)
    torch.testing.assert_close(load_file(tmp_path / "layer.safetensors")["grad"], expected, atol=1e-5, rtol=1e-5)


def test_an_input_changed_in_place_after_its_layer_ran_is_refused(snapshot):
    model = PreAndLayer("in place")
    before = snapshot(model)
    with pytest.raises(ValueError, match="the input of layer 'layer' was changed in place"):
        apply_adapter(model, GivaConfig(r=2, target_modules=["layer"]), data=[torch.randn(4, IN)], loss_fn=squared_sum)
    before.assert_same(model)


def test_the_decomposition_runs_lapack_on_one_thread_and_its_products_on_the_callers_and_repeats_exactly(monkeypatch):
    """At 2 threads a decomposition's QRs and SVDs run on one thread, its products with G on two, and the caller's
    count comes back; a second init gives the same bases to the last bit (the counts are fixed, not timed)."""
    import giva.giva as giva_module

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = {"bases": [], "products": [], "qr": []}
    original_bases, original_qr, original_matmul = giva_module.stacked_bases, torch.linalg.qr, LowRankProduct.__matmul__

    def bases(*args):
        seen["bases"].append(torch.get_num_threads())
        return original_bases(*args)

    def qr(*args, **kwargs):
        seen["qr"].append(torch.get_num_threads())
        return original_qr(*args, **kwargs)

    def product(self, M):
        seen["products"].append(torch.get_num_threads())
        return original_matmul(self, M)

    monkeypatch.setattr(giva_module, "stacked_bases", bases)
    monkeypatch.setattr(torch.linalg, "qr", qr)
    monkeypatch.setattr(LowRankProduct, "__matmul__", product)
    try:
        model = nn.Sequential(nn.Linear(IN, OUT), nn.Tanh(), nn.Linear(OUT, 40), nn.Tanh(), nn.Linear(40, 32))
        data = [torch.randn(5, IN)]  # 5 rows: the wide layers' bases come from the factors (LowRankProduct)
        runs = []
        for _ in range(2):
            torch.manual_seed(0)
            adapted = apply_adapter(model, GivaConfig(r=2, target_modules=["0", "2", "4"]), data=data,
                                    loss_fn=squared_sum)
            runs.append({name: (layer.giva_A.clone(), layer.giva_B.clone())
                         for name, layer in adapted.giva_adapter.layers.items()})
            unload_adapter(adapted)
            assert torch.get_num_threads() == 2
        assert set(seen["bases"]) == {1} and set(seen["qr"]) == {1} and set(seen["products"]) == {2}, seen
        assert all(torch.equal(a, b) for name in runs[0] for a, b in zip(runs[0][name], runs[1][name]))
    finally:
        torch.set_num_threads(threads)
