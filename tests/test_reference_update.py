"""The reference-update test (issue #11): one Soft-IntroVAE / AS-IntroVAE iteration written out in plain lines from the
equations and the reference code's choices, compared with the project's losses and every parameter's gradient at a
trained state, with fixed reparameterisation noise.

The reference choices restated here (taldatech/soft-intro-vae-pytorch, soft_intro_vae_2d/train_soft_intro_vae_2d.py;
LOUEY233/AS-IntroVAE, A_VAE.py):
- the toy MLP is Linear(2, 256)+ReLU, 3 x [Linear(256, 256)+ReLU], output layer (199,172 encoder parameters);
- encoder step: fakes enter the encoder detached, their re-decodings go through the frozen decoder with gradient, and
  are scored against the fake itself NOT detached (the reconstruction x_r = D(z) carries the encoder's gradient);
- decoder step: z of the real batch from the encoder step, fakes encoded with gradient (frozen encoder), re-decoded
  from detached latents, scored against detached fakes; gamma_r-weighted;
- s = 1/2 (two data dimensions), batch means, exp(-2 s ELBO) averaged over the batch, 1/4 for the two kinds;
- AS-IntroVAE: the fakes' KL -> c KL + (1 - c) D, D from asintrovae.kernel (checked in the kernel chapter), between the
  real posterior and each fake's ('real-fake'), or between the reconstructions' and the samples' ('rec-fake'); in the
  decoder step the real posterior is re-encoded by the updated encoder (the default, real_posterior='reencode').

Fixed noise: torch is seeded right before each call in both paths, and both draw eps in the same order (encoder step:
real, sample, reconstruction; decoder step: sample, reconstruction).
"""
import pytest
import torch

from asintrovae.data import sample_toy
from asintrovae.kernel import as_distance_logvar
from asintrovae.losses import ASIntroVAELoss, Betas, SoftIntroVAELoss, as_weight
from asintrovae.models import StackedLinear, toy_vae
from asintrovae.train import ToyBatches, Trainer, TrainConfig

CONFIGS = [(0.3, 0.2, 0.9), (0.5, 0.1, 0.9)]       # two members with different betas
WARMUP, BATCH, TOL = 300, 128, 1e-5


# ---- the reference, in plain lines ---------------------------------------------------------------------------------
def kl(mu, lv): return -0.5*(1 + lv - mu**2 - lv.exp()).sum(-1)
def sq(a, b): return ((a - b)**2).sum(-1)
def sample(mu, lv): return mu + (0.5*lv).exp()*torch.randn_like(mu)


def divergence(kl_f, pair, c, kernel):
    "c KL + (1 - c) D(pair) (Eq. 9), or the KL when there is no AS term."
    if c is None: return kl_f
    return c*kl_f + (1 - c)*as_distance_logvar(*pair[0], *pair[1], kernel=kernel).unsqueeze(-1)


def pairs_of(posts, real_post, pairs):
    "The two posteriors D compares for each kind of fake: (real, that fake) or (reconstructions, samples) for both."
    return {k: (real_post, posts[k]) if pairs == 'real-fake' else (posts['rec'], posts['fake']) for k in posts}


def reference_encoder_loss(m, x, noise, b, c=None, pairs='real-fake', kernel='paper'):
    s = 0.5
    mu, lv = m.encode(x); z = sample(mu, lv); rec = m.decode(z)
    fake = m.decode(noise)
    posts, errs, kls = {}, {}, {}
    for k, xf in (('fake', fake), ('rec', rec)):
        mf, lf = m.encode(xf.detach())
        posts[k], kls[k], errs[k] = (mf, lf), kl(mf, lf), sq(xf, m.decode(sample(mf, lf)))      # target NOT detached
    ds = pairs_of(posts, (mu, lv), pairs)
    exp_elbo = {k: (-2*s*(b.beta_rec*errs[k] + b.beta_neg*divergence(kls[k], ds[k], c, kernel))).exp().mean(-1) for k in posts}
    loss = s*(b.beta_rec*sq(x, rec) + b.beta_kl*kl(mu, lv)).mean(-1) + 0.25*(exp_elbo['fake'] + exp_elbo['rec'])
    return loss, z.detach(), (mu.detach(), lv.detach())


def reference_decoder_loss(m, x, noise, b, z, real_post, c=None, pairs='real-fake', kernel='paper'):
    s = 0.5
    rec = m.decode(z); fake = m.decode(noise)
    posts, errs, kls = {}, {}, {}
    for k, xf in (('fake', fake), ('rec', rec)):
        mf, lf = m.encode(xf)
        posts[k], kls[k], errs[k] = (mf, lf), kl(mf, lf), sq(xf.detach(), m.decode(sample(mf, lf).detach()))
    ds = pairs_of(posts, real_post, pairs)
    fake_terms = sum(0.5*b.beta_kl*divergence(kls[k], ds[k], c, kernel) + 0.5*b.gamma_r*b.beta_rec*errs[k]
                     for k in posts)
    return s*(b.beta_rec*sq(x, rec) + fake_terms).mean(-1)


# ---- the comparison -------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def trained():
    "A 2-member reference-depth model after WARMUP VAE warm-up steps, one real batch and prior noise."
    torch.manual_seed(0)
    model = toy_vae(members=len(CONFIGS))
    betas = Betas.stacked(CONFIGS)
    cfg = TrainConfig(iterations=WARMUP, warmup=WARMUP, log_every=10**9, progress=False, checkpoint_every=10**9)
    Trainer(model, SoftIntroVAELoss(betas), ToyBatches('8gaussians', len(CONFIGS), BATCH, seed=0), cfg).fit()
    x = sample_toy('8gaussians', len(CONFIGS)*BATCH, torch.Generator().manual_seed(1)).view(len(CONFIGS), BATCH, 2)
    noise = torch.randn(len(CONFIGS), BATCH, 2, generator=torch.Generator().manual_seed(2))
    return model.state_dict(), betas, x, noise


def grads(loss, params, keep=False):
    return torch.autograd.grad(loss.sum(), params, retain_graph=keep)


def relative_errors(ours, ref):
    "Per parameter tensor: |ours - ref| / |ref| (norms over the tensor)."
    return [float((a - r).norm()/r.norm()) for a, r in zip(ours, ref)]


def one_iteration(state, betas, x, noise, loss, it, c=None, pairs='real-fake', kernel='paper', real_posterior='reencode'):
    """Encoder step then decoder step, the project's loss and the reference on the same weights and noise; between them
    the encoder takes one Adam step, as in training. -> dict of (loss relative error, max gradient relative error)."""
    model = toy_vae(members=len(CONFIGS)); model.load_state_dict(state)
    enc, dec = list(model.encoder.parameters()), list(model.decoder.parameters())
    out = {}
    for p in dec: p.requires_grad_(False)                                   # encoder step: decoder frozen
    torch.manual_seed(10); ours, _, cache = loss.encoder_loss(model, x, noise, it)
    torch.manual_seed(10); ref, z, _ = reference_encoder_loss(model, x, noise, betas, c, pairs, kernel)
    out['encoder'] = (float(((ours - ref).detach().norm()/ref.detach().norm())), max(relative_errors(grads(ours, enc, keep=True), grads(ref, enc))))
    opt = torch.optim.Adam(enc, lr=2e-4); opt.zero_grad(); ours.sum().backward(); opt.step()   # the encoder moves
    assert torch.equal(cache['z'], z)
    for p in dec: p.requires_grad_(True)
    for p in enc: p.requires_grad_(False)                                   # decoder step: encoder frozen
    with torch.no_grad(): real_post = model.encode(x)                       # the updated encoder's real posterior
    torch.manual_seed(11); ours = loss.decoder_loss(model, x, noise, it, cache)[0]
    torch.manual_seed(11); ref = reference_decoder_loss(model, x, noise, betas, z, real_post, c, pairs, kernel)
    out['decoder'] = (float(((ours - ref).detach().norm()/ref.detach().norm())), max(relative_errors(grads(ours, dec), grads(ref, dec))))
    return out


def assert_matches(out):
    for step, (loss_err, grad_err) in out.items():
        assert loss_err < TOL and grad_err < TOL, f'{step} step: loss {loss_err:.2e}, gradient {grad_err:.2e} (tolerance {TOL})'


def test_soft_introvae_update_matches_the_reference(trained):
    state, betas, x, noise = trained
    assert_matches(one_iteration(state, betas, x, noise, SoftIntroVAELoss(betas), it=WARMUP + 1))


@pytest.mark.parametrize('pairs', ['real-fake', 'rec-fake'])
def test_as_introvae_update_matches_the_reference_while_c_below_1(trained, pairs):
    state, betas, x, noise = trained
    total = 30_000
    loss = ASIntroVAELoss(betas, total, kernel='marginal', pairs=pairs, warmup=WARMUP)   # a kernel with a usable gradient at d = 2
    it = WARMUP + 1_000
    c = as_weight(it - WARMUP, total - WARMUP)
    assert 0 < c < 1
    assert_matches(one_iteration(state, betas, x, noise, loss, it, c, pairs, 'marginal'))
    paper = ASIntroVAELoss(betas, total, pairs=pairs, warmup=WARMUP)                      # the default kernel too
    assert_matches(one_iteration(state, betas, x, noise, paper, it, c, pairs, 'paper'))


# ---- the test fails on the old behaviour -----------------------------------------------------------------------------
def test_detached_target_is_caught(trained):
    "Putting the detach back (detach_target=True): the losses agree, the encoder's gradient does not."
    state, betas, x, noise = trained
    out = one_iteration(state, betas, x, noise, SoftIntroVAELoss(betas, detach_target=True), it=WARMUP + 1)
    loss_err, grad_err = out['encoder']
    assert loss_err < TOL and grad_err > 1e-2, out


def test_cached_real_posterior_is_caught(trained):
    "The decoder step with the real posterior from before the encoder update differs from the reference's re-encoding."
    state, betas, x, noise = trained
    loss = ASIntroVAELoss(betas, 30_000, kernel='marginal', warmup=WARMUP, real_posterior='cache')
    it = WARMUP + 1_000
    out = one_iteration(state, betas, x, noise, loss, it, as_weight(it - WARMUP, 30_000 - WARMUP), 'real-fake', 'marginal')
    assert out['encoder'][1] < TOL and out['decoder'][1] > 1e-4, out


def linear_shapes(net):
    "(n_in, n_out) of every stacked linear layer, and whether a ReLU follows each but the last."
    mods = list(net)
    shapes = [tuple(m.weight.shape[1:]) for m in mods if isinstance(m, StackedLinear)]
    relus = [type(b).__name__ == 'ReLU' for a, b in zip(mods, mods[1:]) if isinstance(a, StackedLinear)]
    return shapes, relus


REFERENCE_ENCODER = [(2, 256), (256, 256), (256, 256), (256, 256), (256, 4)]


def test_toy_model_has_the_reference_depth():
    m = toy_vae()
    assert linear_shapes(m.encoder.net) == (REFERENCE_ENCODER, [True]*4)
    assert linear_shapes(m.decoder.net) == ([(2, 256)] + REFERENCE_ENCODER[1:-1] + [(256, 2)], [True]*4)
    assert sum(p.numel() for p in m.encoder.parameters()) == 199_172


def test_three_layer_model_is_caught():
    "Putting the 3-layer model back fails the depth check."
    m = toy_vae(layers=3)
    assert linear_shapes(m.encoder.net)[0] != REFERENCE_ENCODER
    assert sum(p.numel() for p in m.encoder.parameters()) != 199_172
