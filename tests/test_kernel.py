"""Unit tests of asintrovae.kernel beyond the notebook's own checks: the public API as a user calls it."""
import math

import pytest
import torch

from asintrovae.kernel import LOG_KERNELS, as_distance, as_distance_logvar, log_as_distance


def _batches(seed=0, n=32, d=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=dtype), torch.rand(n, d, generator=g, dtype=dtype) + 0.1,
            torch.randn(n, d, generator=g, dtype=dtype) + 1, torch.rand(n, d, generator=g, dtype=dtype) + 0.1)


@pytest.mark.parametrize('kernel', list(LOG_KERNELS))
def test_distance_properties(kernel):
    mu_r, var_r, mu_g, var_g = _batches(dtype=torch.float64)
    d = as_distance(mu_r, var_r, mu_g, var_g, kernel=kernel)
    assert d > 0
    assert as_distance(mu_r, var_r, mu_r, var_r, kernel=kernel).abs() < 1e-12
    # symmetric in its two batches
    assert torch.isclose(d, as_distance(mu_g, var_g, mu_r, var_r, kernel=kernel), rtol=1e-12)
    # invariant to the order of the batch
    perm = torch.randperm(32)
    assert torch.isclose(d, as_distance(mu_r[perm], var_r[perm], mu_g, var_g, kernel=kernel), rtol=1e-10)


def test_paper_kernel_closed_form_1d():
    "One posterior per batch in 1-D: D = k(r,r) + k(g,g) - 2k(r,g) with k the Gaussian density formula."
    mr, vr, mg, vg = 0.3, 0.5, -0.4, 0.2
    k = lambda m1, v1, m2, v2: math.exp(-(m1 - m2)**2/(2*(v1 + v2)))/math.sqrt(2*math.pi*(v1 + v2))
    expected = k(mr, vr, mr, vr) + k(mg, vg, mg, vg) - 2*k(mr, vr, mg, vg)
    t = lambda x: torch.tensor([[x]], dtype=torch.float64)
    assert math.isclose(as_distance(t(mr), t(vr), t(mg), t(vg)).item(), expected, rel_tol=1e-12)


def test_sum_reduction_scales_by_pairs():
    mu_r, var_r, mu_g, var_g = _batches(dtype=torch.float64)
    mean = as_distance(mu_r, var_r, mu_g, var_g, kernel='official')
    total = as_distance(mu_r, var_r, mu_g, var_g, kernel='official', reduction='sum')
    assert torch.isclose(total, mean*32*32, rtol=1e-10)


def test_squash_matches_manual_tanh():
    mu_r, var_r, mu_g, var_g = _batches(dtype=torch.float64)
    lr, lg = var_r.log(), var_g.log()
    a = as_distance_logvar(mu_r, lr, mu_g, lg, kernel='official', squash=True)
    b = as_distance_logvar(mu_r.tanh(), lr.tanh(), mu_g.tanh(), lg.tanh(), kernel='official')
    assert torch.isclose(a, b, rtol=1e-12)


def test_blocked_path_equals_direct_path():
    "Large batches go through checkpointed row blocks; value and gradient equal the small-batch path."
    import asintrovae.kernel as K
    mu_r, var_r, mu_g, var_g = _batches(n=64, d=8, dtype=torch.float64)
    lr, lg = var_r.log(), var_g.log()
    def value_and_grad(max_elems):
        old = K._blocked.__defaults__
        K._blocked.__defaults__ = (max_elems,)
        try:
            m = mu_g.clone().requires_grad_()
            d = as_distance_logvar(mu_r, lr, m, lg, kernel='paper')
            d.backward()
            return d.detach(), m.grad
        finally: K._blocked.__defaults__ = old
    d_full, g_full = value_and_grad(2**24)
    d_blk, g_blk = value_and_grad(64*8*5)        # 5 rows per block
    assert torch.allclose(d_full, d_blk, rtol=1e-12) and torch.allclose(g_full, g_blk, rtol=1e-10)


def test_log_distance_survives_where_distance_underflows():
    mu_r, _, mu_g, _ = (t.repeat(1, 64) for t in _batches(d=2))
    lv = torch.zeros_like(mu_r)
    assert as_distance_logvar(mu_r, lv, mu_g, lv) == 0            # float32 underflow at d = 128
    ld = log_as_distance(mu_r, lv, mu_g, lv)
    assert torch.isfinite(ld) and ld < -87                      # below float32's exp range, still finite
    ld64 = log_as_distance(mu_r.double(), lv.double(), mu_g.double(), lv.double())
    assert torch.isclose(ld.double(), ld64, rtol=1e-4)


def test_unknown_kernel_message():
    mu_r, var_r, mu_g, var_g = _batches()
    with pytest.raises(ValueError, match="kernel='gauss'.*paper"):
        as_distance(mu_r, var_r, mu_g, var_g, kernel='gauss')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_cpu():
    mu_r, var_r, mu_g, var_g = _batches(dtype=torch.float64)
    cpu = as_distance(mu_r, var_r, mu_g, var_g, kernel='marginal')
    gpu = as_distance(*(t.cuda() for t in (mu_r, var_r, mu_g, var_g)), kernel='marginal')
    assert torch.isclose(cpu, gpu.cpu(), rtol=1e-10)


def _official_by_hand(mu_a, lv_a, mu_b, lv_b, reduce):
    "The official code's Gaussian_Distance with plain Python loops over pairs and dimensions (inputs: lists of lists)."
    def term(m1, l1, m2, l2):
        vals = [math.exp(-0.5*(m1[i][t] - m2[j][t])**2/(math.exp(l1[i][t]) + math.exp(l2[j][t])))
                / math.sqrt(math.exp(l1[i][t]) + math.exp(l2[j][t]))
                for i in range(len(m1)) for j in range(len(m2)) for t in range(len(m1[0]))]
        return sum(vals)/len(vals) if reduce == 'mean' else sum(vals)
    return term(mu_a, lv_a, mu_a, lv_a) + term(mu_b, lv_b, mu_b, lv_b) - 2*term(mu_a, lv_a, mu_b, lv_b)


def test_official_code_reductions_by_hand():
    "kernel='official' with reduction 'mean_dims' (decoder) / 'sum' (encoder) is LOUEY233/AS-IntroVAE's Gaussian_Distance."
    # one posterior per batch, one dimension, variances 1: every term is exp(-diff^2/4)/sqrt(2)
    t = lambda x: torch.tensor(x, dtype=torch.float64)
    expected = 2/math.sqrt(2) - 2*math.exp(-0.25)/math.sqrt(2)          # = 0.31290...
    assert math.isclose(expected, 0.3129, abs_tol=1e-4)
    for red in ('mean_dims', 'sum', 'mean'):
        assert math.isclose(as_distance_logvar(t([[0.]]), t([[0.]]), t([[1.]]), t([[0.]]), kernel='official', reduction=red).item(),
                            expected, rel_tol=1e-12)
    # two posteriors per batch in two dimensions, squashed by tanh as the official code does
    mu_a, lv_a = [[0.3, -1.2], [2.0, 0.1]], [[0.5, -0.7], [-2.0, 1.5]]
    mu_b, lv_b = [[-0.4, 0.9], [1.1, -0.3]], [[0.0, 0.8], [-1.1, -0.2]]
    sq = [[[math.tanh(v) for v in row] for row in m] for m in (mu_a, lv_a, mu_b, lv_b)]
    for red, reduce in (('mean_dims', 'mean'), ('sum', 'none')):
        ours = as_distance_logvar(t(mu_a), t(lv_a), t(mu_b), t(lv_b), kernel='official', squash=True, reduction=red).item()
        assert math.isclose(ours, _official_by_hand(*sq, reduce), rel_tol=1e-12)
    # the sum is B^2 d = 8 times the mean over pairs and dimensions; our default mean over pairs is d = 2 times it
    dec = as_distance_logvar(t(mu_a), t(lv_a), t(mu_b), t(lv_b), kernel='official', squash=True, reduction='mean_dims')
    enc = as_distance_logvar(t(mu_a), t(lv_a), t(mu_b), t(lv_b), kernel='official', squash=True, reduction='sum')
    pairs = as_distance_logvar(t(mu_a), t(lv_a), t(mu_b), t(lv_b), kernel='official', squash=True)
    assert math.isclose(enc.item(), 8*dec.item(), rel_tol=1e-12) and math.isclose(pairs.item(), 2*dec.item(), rel_tol=1e-12)


def test_official_kernel_where_fake_variances_collapsed():
    """Without the official tanh, kernel='official' is still the official Gaussian_Distance where the fakes' posterior
    variances have collapsed to 1e-12..1e-28, as in the toy runs that diverged (tools/official_kernel_check.py), and D
    grows like the diagonal terms 1/sqrt(2 var); after the official tanh (var >= 1/e) it stays below 2 d / sqrt(2/e)."""
    g = torch.Generator().manual_seed(0)
    mu_a, lv_a = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    mu_b = torch.randn(3, 2, generator=g, dtype=torch.float64)
    lists = lambda *ts: [t.tolist() for t in ts]
    for log_var in (-27.6, -46.0, -64.5):                       # var 1e-12, 1e-20, 1e-28
        lv_b = torch.full((3, 2), log_var, dtype=torch.float64) + 0.1*torch.randn(3, 2, generator=g, dtype=torch.float64)
        for red, reduce in (('mean_dims', 'mean'), ('sum', 'none')):
            ours = as_distance_logvar(mu_a, lv_a, mu_b, lv_b, kernel='official', reduction=red).item()
            assert math.isclose(ours, _official_by_hand(*lists(mu_a, lv_a, mu_b, lv_b), reduce), rel_tol=1e-10)
        d = as_distance_logvar(mu_a, lv_a, mu_b, lv_b, kernel='official', reduction='mean_dims').item()
        diagonal = (2*lv_b.exp()).rsqrt().sum().item()/(3*3*2)    # the fakes' own diagonal terms, averaged as D averages
        assert 0.9*diagonal < d < 1.1*diagonal and d > 1e5
        squashed = as_distance_logvar(mu_a, lv_a, mu_b, lv_b, kernel='official', squash=True, reduction='mean_dims').item()
        assert 0 <= squashed < 2/math.sqrt(2/math.e)


def test_unknown_reduction_message():
    mu_r, var_r, mu_g, var_g = _batches()
    with pytest.raises(ValueError, match="reduction='max'.*mean_dims"):
        as_distance(mu_r, var_r, mu_g, var_g, reduction='max')


def _stack(seed=0, members=4, n=512, d=2):
    "A toy-sized stack of posteriors: [members, n, d] means and log-variances for two batches (4 x 512 x 512 pairs, above FUSED_MIN_PAIRS)."
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(members, n, d, generator=g), 0.3*torch.randn(members, n, d, generator=g) - 2,
            torch.randn(members, n, d, generator=g) + 0.3, 0.3*torch.randn(members, n, d, generator=g) - 2)


def _value_and_grads(kernel, ins, **kw):
    xs = [t.clone().requires_grad_() for t in ins]
    d = as_distance_logvar(*xs, kernel=kernel, **kw)
    return d.detach(), torch.autograd.grad(d.sum(), xs)


@pytest.mark.parametrize('kernel', ['paper', 'marginal'])
def test_fused_path_is_automatic_for_toy_stacks_and_matches_eager(kernel, monkeypatch):
    "A stack of 4 x 512 x 512 pairs in d = 2 goes through the compiled fused path; D and all four gradients equal the eager path's."
    import asintrovae.kernel as K
    calls = []
    fused = K.log_sum_kernel_fused
    monkeypatch.setattr(K, 'log_sum_kernel_fused', lambda *a: calls.append(1) or fused(*a))
    ins = _stack()
    d_fused, g_fused = _value_and_grads(kernel, ins)
    assert len(calls) == 3                                          # the three log-means of Eq. 7
    monkeypatch.setenv('ASINTROVAE_FUSED_KERNEL', '0')
    d_eager, g_eager = _value_and_grads(kernel, ins)
    assert len(calls) == 3                                          # the switch turns it off
    d64, _ = _value_and_grads(kernel, [t.double() for t in ins])
    # D is a difference of terms of size e^M: both float32 paths agree with float64 to the same precision
    scale = max(d64.abs().max().item(), 1e-30)
    assert (d_fused.double() - d64).abs().max() < 1e-4*scale and (d_eager.double() - d64).abs().max() < 1e-4*scale
    for a, b in zip(g_fused, g_eager):
        assert (a - b).norm() <= 1e-4*b.norm()


def test_fused_path_falls_back_when_the_compiler_cannot_run(monkeypatch):
    "Where torch.compile cannot build a kernel, one warning and the eager path (same numbers)."
    import asintrovae.kernel as K
    K._compiler_works.cache_clear()
    def broken(*a, **k): raise RuntimeError('no C++ compiler found')
    monkeypatch.setattr(torch, 'compile', broken)
    try:
        ins = _stack(members=4)
        with pytest.warns(UserWarning, match='fused AS kernel is off.*no C\\+\\+ compiler'):
            d, _ = _value_and_grads('paper', ins)
        monkeypatch.setenv('ASINTROVAE_FUSED_KERNEL', '0')
        d_eager, _ = _value_and_grads('paper', ins)
        assert torch.equal(d, d_eager)
    finally: K._compiler_works.cache_clear()
