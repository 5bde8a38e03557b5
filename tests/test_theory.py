"""Unit tests of asintrovae.theory beyond the notebook's own checks: the public API as a user calls it."""
import math

import pytest
import torch

from asintrovae.theory import (LOG2, gaussian_log_density, jsd_deficit_quadrature_1d, jsd_quadrature_1d,
                               kl_gaussians, kl_to_mixture_gaps_1d, mixture_jsd_deficit_bound,
                               mixture_jsd_deficit_is, mixture_jsd_deficit_mc, mixture_jsd_grad_bound, mixture_jsd_mc,
                               mixture_log_density, pairwise_gaussian_log_density, quadrature_grid_1d,
                               sample_mixture_stratified, w2_gaussians)

f64 = dict(dtype=torch.float64)
def one(x): return torch.tensor([[x]], **f64)


def test_gaussian_log_density_integrates_to_one():
    z = quadrature_grid_1d(0.7, 0.3, 0.7, 0.3)
    assert math.isclose(torch.trapezoid(gaussian_log_density(z, 0.7, torch.tensor(0.3, **f64)).exp(), z).item(), 1, rel_tol=1e-12)


def test_jsd_identical_is_zero_and_bounded():
    assert abs(jsd_quadrature_1d(0.4, 0.6, 0.4, 0.6).item()) < 1e-14
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        m1, m2 = (torch.randn(2, generator=g, **f64)*3).tolist()
        v1, v2 = (torch.rand(2, generator=g, **f64)*2 + 0.01).tolist()
        j = jsd_quadrature_1d(m1, v1, m2, v2).item()
        assert 0 <= j <= LOG2
        assert math.isclose(j, jsd_quadrature_1d(m2, v2, m1, v1).item(), rel_tol=1e-12, abs_tol=1e-15)  # symmetric


def test_jsd_equal_variance_closed_value_at_u1():
    "JSD(N(0,1) || N(1,1)) against the entropy form computed on an independent, much finer uniform grid."
    z = torch.linspace(-30, 31, 400_001, **f64)
    p, q = gaussian_log_density(z, 0., torch.tensor(1., **f64)).exp(), gaussian_log_density(z, 1., torch.tensor(1., **f64)).exp()
    m = (p + q)/2
    h = lambda f: -torch.trapezoid(torch.where(f > 0, f*f.log(), torch.zeros_like(f)), z)
    ref = h(m) - 0.5*math.log(2*math.pi*math.e)
    assert math.isclose(jsd_quadrature_1d(0., 1., 1., 1.).item(), ref.item(), rel_tol=1e-9)


def test_gaps_are_log2_minus_kl_to_mixture():
    g1, g2 = kl_to_mixture_gaps_1d(0., 0.5, 1.2, 2.)
    z = quadrature_grid_1d(0., 0.5, 1.2, 2., points_per_sd=32)
    l1, l2 = gaussian_log_density(z, 0., torch.tensor(0.5, **f64)), gaussian_log_density(z, 1.2, torch.tensor(2., **f64))
    lm = torch.logaddexp(l1, l2) - LOG2
    assert math.isclose((LOG2 - g1).item(), torch.trapezoid(l1.exp()*(l1 - lm), z).item(), rel_tol=1e-10)
    assert math.isclose((LOG2 - g2).item(), torch.trapezoid(l2.exp()*(l2 - lm), z).item(), rel_tol=1e-10)


def test_deficit_is_accurate_far_past_double_precision_of_jsd():
    "log 2 - JSD at u = 20 is ~2e-23, far below the resolution of JSD itself; it must still match the asymptote."
    u = 40.
    d = jsd_deficit_quadrature_1d(0., 1., u, 1.).item()
    assert d > 0 and abs(d/(math.sqrt(2*math.pi)*math.exp(-u*u/8)/u) - 1) < 10/u**2
    assert jsd_quadrature_1d(0., 1., u, 1.).item() == LOG2   # the JSD itself has saturated in float64


def test_default_grid_resolves_the_crossover():
    "Far into saturation (u = 40) the default grid must agree with a 30x finer one: the step shrinks with the separation."
    for var in (1., 1e-2):
        t = torch.tensor(40*math.sqrt(var), **f64, requires_grad=True)
        d, d_fine = jsd_deficit_quadrature_1d(0., var, t, var), jsd_deficit_quadrature_1d(0., var, t, var, points_per_sd=2560)
        g, g_fine = (torch.autograd.grad(x, t)[0].item() for x in (d, d_fine))
        assert math.isclose(d.item(), d_fine.item(), rel_tol=1e-6) and math.isclose(g, g_fine, rel_tol=1e-6)


def test_jsd_gradient_finite_and_matches_finite_difference():
    for var in (1., 1e-2, 1e-4):
        t = torch.tensor(3*math.sqrt(var), **f64, requires_grad=True)
        d = jsd_quadrature_1d(0., var, t, var)
        g, = torch.autograd.grad(d, t)
        h = 1e-6*math.sqrt(var)
        fd = (jsd_quadrature_1d(0., var, t.item() + h, var) - jsd_quadrature_1d(0., var, t.item() - h, var)).item()/(2*h)
        assert math.isfinite(g.item()) and g > 0 and math.isclose(g.item(), fd, rel_tol=1e-5)


@pytest.mark.parametrize('m1,v1,m2,v2', [(0., 1., 1., 1.), (0.3, 0.2, -1.1, 2.5), (2., 0.01, 1.9, 0.05)])
def test_kl_closed_form_against_quadrature(m1, v1, m2, v2):
    z = quadrature_grid_1d(m1, v1, m2, v2, points_per_sd=32)
    l1, l2 = (gaussian_log_density(z, m, torch.tensor(v, **f64)) for m, v in ((m1, v1), (m2, v2)))
    ref = torch.trapezoid(l1.exp()*(l1 - l2), z)
    t = lambda x: torch.tensor([x], **f64)
    assert math.isclose(kl_gaussians(t(m1), t(v1), t(m2), t(v2)).item(), ref.item(), rel_tol=1e-9)


def test_kl_sums_over_dimensions_and_vanishes_for_equal():
    mu, var = torch.randn(5, 3, **f64), torch.rand(5, 3, **f64) + 0.1
    assert kl_gaussians(mu, var, mu, var).abs().max() < 1e-14
    assert kl_gaussians(mu, var, mu + 1, var).shape == (5,)


@pytest.mark.parametrize('m1,v1,m2,v2', [(0., 1., 1., 1.), (0.3, 0.2, -1.1, 2.5), (2., 0.01, 1.9, 0.05)])
def test_w2_closed_form_against_quantile_integral(m1, v1, m2, v2):
    "W2^2 = int_0^1 (F1^-1(p) - F2^-1(p))^2 dp in 1-D."
    p = (torch.arange(400_000, **f64) + 0.5)/400_000
    q = torch.special.ndtri(p)
    ref = ((m1 + math.sqrt(v1)*q) - (m2 + math.sqrt(v2)*q)).square().mean().sqrt()
    t = lambda x: torch.tensor([x], **f64)
    assert math.isclose(w2_gaussians(t(m1), t(v1), t(m2), t(v2)).item(), ref.item(), rel_tol=1e-4)


def test_pairwise_and_mixture_log_density_against_direct_sum():
    g = torch.Generator().manual_seed(1)
    z, mu, lv = (torch.randn(n, 4, generator=g, **f64) for n in (30, 7, 7))
    direct = gaussian_log_density(z[:, None], mu[None], lv.exp()[None]).sum(-1)
    assert torch.allclose(pairwise_gaussian_log_density(z, mu, lv), direct, rtol=1e-12, atol=1e-10)
    assert torch.allclose(mixture_log_density(z, mu, lv), torch.logsumexp(direct, -1) - math.log(7), rtol=1e-12)


def test_stratified_sampler_shape_and_moments():
    mu, lv = torch.tensor([[0., 5.], [10., -5.]], **f64), torch.tensor([[0., 0.], [math.log(4), 0.]], **f64)
    z = sample_mixture_stratified(mu, lv, 20_000, torch.Generator().manual_seed(0))
    assert z.shape == (40_000, 2)
    assert torch.allclose(z[:20_000].mean(0), mu[0], atol=0.05) and abs(z[20_000:, 0].std().item() - 2) < 0.05


@pytest.mark.parametrize('m2,v2', [(1., 1.), (2., 1.5)])
def test_mc_jsd_one_component_matches_quadrature(m2, v2):
    est = mixture_jsd_mc(one(0.), one(0.), one(m2), one(v2).log(), 20_000, torch.Generator().manual_seed(0))
    assert abs(est.item() - jsd_quadrature_1d(0., 1., m2, v2).item()) < 0.01


def test_mc_jsd_is_differentiable_and_zero_for_identical_batches():
    mu, lv = torch.randn(8, 3, **f64), torch.zeros(8, 3, **f64)
    assert abs(mixture_jsd_mc(mu, lv, mu, lv, 16, torch.Generator().manual_seed(0)).item()) < 1e-12
    m = (mu + 0.5).requires_grad_()
    g, = torch.autograd.grad(mixture_jsd_deficit_mc(mu, lv, m, lv, 16, torch.Generator().manual_seed(0)), m)
    assert torch.isfinite(g).all() and g.norm() > 0


@pytest.mark.parametrize('u', [2., 10., 25.])
def test_bounds_hold_and_importance_sampler_matches_quadrature(u):
    t = torch.tensor(u, **f64, requires_grad=True)
    truth = jsd_deficit_quadrature_1d(0., 1., t, 1.)
    g_truth = torch.autograd.grad(truth, t)[0].abs()
    args = (one(0.), one(0.), one(u), one(0.))
    assert mixture_jsd_deficit_bound(*args) >= truth and mixture_jsd_grad_bound(*args) >= g_truth
    m = one(u).requires_grad_()
    est = mixture_jsd_deficit_is(one(0.), one(0.), m, one(0.), 4096, torch.Generator().manual_seed(0))
    g, = torch.autograd.grad(est, m)
    assert abs(est.item()/truth.item() - 1) < 0.1 and abs(g.abs().item()/g_truth.item() - 1) < 0.1


def test_bounds_hold_for_batches_in_2d():
    "Bounds above a 2-D quadrature of the mixtures' deficit and of its gradient norm."
    g = torch.Generator().manual_seed(3)
    mu_r, mu_g = torch.randn(5, 2, generator=g, **f64), torch.randn(6, 2, generator=g, **f64) + 1
    lv_r, lv_g = torch.rand(5, 2, generator=g, **f64).log() - 0.5, torch.rand(6, 2, generator=g, **f64).log() - 0.5
    mu_g.requires_grad_()
    zs = torch.arange(-8, 9, 0.04, **f64)
    Z = torch.cartesian_prod(zs, zs)
    lr, lg = mixture_log_density(Z, mu_r, lv_r), mixture_log_density(Z, mu_g, lv_g)
    f = (0.5*(lr.exp()*torch.nn.functional.softplus(lg - lr) + lg.exp()*torch.nn.functional.softplus(lr - lg))).reshape(len(zs), -1)
    deficit = torch.trapezoid(torch.trapezoid(f, zs), zs)
    grad, = torch.autograd.grad(deficit, mu_g)
    assert mixture_jsd_deficit_bound(mu_r, lv_r, mu_g, lv_g) >= deficit
    assert mixture_jsd_grad_bound(mu_r, lv_r, mu_g, lv_g) >= grad.norm()
    est = mixture_jsd_deficit_is(mu_r, lv_r, mu_g.detach(), lv_g, 8192, torch.Generator().manual_seed(0))
    assert abs(est.item()/deficit.item() - 1) < 0.05


def test_importance_sampler_finite_in_high_dimension():
    g = torch.Generator().manual_seed(4)
    mu_r, mu_g = torch.randn(16, 256, generator=g, **f64), torch.randn(16, 256, generator=g, **f64).requires_grad_()
    lv = torch.full((16, 256), math.log(0.1), **f64)
    est = mixture_jsd_deficit_is(mu_r, lv, mu_g, lv, 512, torch.Generator().manual_seed(0))
    grad, = torch.autograd.grad(est, mu_g)
    assert torch.isfinite(grad).all() and 0 <= est.item() <= mixture_jsd_deficit_bound(mu_r, lv, mu_g, lv).item()
