"""Unit tests of the image models: the Soft-IntroVAE ResNet encoder/decoder and the WGAN-GP critic."""
import copy

import pytest
import torch

from asintrovae.models import IMAGE_Z_DIMS, Critic, ImageDecoder, ImageEncoder, ResBlock, image_vae, n_params

CASES = [(28, 1), (32, 3), (64, 3), (128, 3), (256, 3)]
TINY = 1/16                                            # widths 4, 8, 16, 32, ...: same architecture, cheap

# (encoder, decoder, critic) trainable parameters at full width, checked by the formula in nbs/03_models.ipynb
FULL_COUNTS = {28: (928_512, 697_025, 533_313), 32: (3_382_848, 2_382_531, 2_338_113),
               64: (11_643_456, 8_352_451, 9_554_241), 128: (16_364_096, 13_073_091, 14_274_881),
               256: (23_182_144, 18_842_307, 18_995_521)}


@pytest.mark.parametrize('res,ch', CASES)
def test_shapes_at_every_resolution(res, ch):
    torch.manual_seed(0)
    vae, critic, z = image_vae(res, ch, width_scale=TINY), Critic(res, ch, width_scale=TINY), IMAGE_Z_DIMS[res]
    x = torch.randn(2, ch, res, res)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (2, z) and vae.z_dim == z
    assert vae.decode(mu).shape == (2, ch, res, res)
    assert vae.sample((2, z)).shape == (2, ch, res, res)
    assert critic(x).shape == (2,)


@pytest.mark.parametrize('res,ch', CASES)
def test_full_size_parameter_counts(res, ch):
    with torch.device('meta'): vae, critic = image_vae(res, ch), Critic(res, ch)
    assert (n_params(vae.encoder), n_params(vae.decoder), n_params(critic)) == FULL_COUNTS[res]


def test_residual_block_count():
    assert n_params(ResBlock(64, 128)) == 9*64*128 + 9*128*128 + 64*128 + 4*128 == 229_888


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    vae, critic = image_vae(32, width_scale=TINY).eval(), Critic(32, width_scale=TINY)
    vae_cl = copy.deepcopy(vae).to(memory_format=torch.channels_last)
    critic_cl = copy.deepcopy(critic).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32)
    x_cl = x.to(memory_format=torch.channels_last)
    assert x_cl.is_contiguous(memory_format=torch.channels_last) and not x_cl.is_contiguous()
    for a, b in zip(vae_cl.encode(x_cl), vae.encode(x)): torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    z = torch.randn(2, 128)
    torch.testing.assert_close(vae_cl.decode(z), vae.decode(z), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(critic_cl(x_cl), critic(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('float32_head', [True, False])
def test_bf16_autocast_is_finite_with_float32_output_layers(float32_head):
    "Under bf16 autocast the trunks run in bf16; the posterior, the image and the critic score come out of float32 layers (or bf16 ones if asked)."
    torch.manual_seed(0)
    vae, critic = image_vae(32, width_scale=TINY, float32_head=float32_head), Critic(32, width_scale=TINY, float32_head=float32_head)
    x = torch.rand(2, 3, 32, 32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mu, logvar = vae.encode(x)
        out = [mu, logvar, vae.decode(mu), critic(x)]
        features = vae.encoder.trunk(x).flatten(1)
    assert features.dtype == torch.bfloat16                            # autocast is on for the layers before the output
    assert [t.dtype for t in out] == [torch.float32 if float32_head else torch.bfloat16]*4 and out[2].shape == (2, 3, 32, 32)
    assert all(torch.isfinite(t.float()).all() for t in out)
    if float32_head:                                                   # the output layer itself computed in float32
        torch.testing.assert_close(torch.cat([mu, logvar], 1), vae.encoder.fc(features.float()), rtol=0, atol=0)


def test_backward_through_encoder_and_decoder():
    torch.manual_seed(0)
    vae = image_vae(28, 1, width_scale=TINY)
    x = torch.rand(2, 1, 28, 28)
    mu, logvar = vae.encode(x)
    z = mu + torch.randn_like(mu)*(0.5*logvar).exp()
    loss = ((vae.decode(z) - x)**2).sum() + 0.5*(mu**2 + logvar.exp() - logvar - 1).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in vae.parameters())


def test_critic_gradient_penalty():
    torch.manual_seed(0)
    critic = Critic(32, width_scale=TINY)
    x_real, x_fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    eps = torch.rand(2, 1, 1, 1)
    x_hat = (eps*x_real + (1 - eps)*x_fake).requires_grad_()
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    assert grad.shape == x_hat.shape
    penalty = ((grad.flatten(1).norm(dim=1) - 1)**2).mean()
    penalty.backward()
    assert torch.isfinite(penalty)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters() if p.ndim > 1)


def test_critic_scores_each_image_alone():
    "No BatchNorm: an image's score does not depend on the rest of the batch (in training mode too)."
    torch.manual_seed(0)
    critic = Critic(32, width_scale=TINY).train()
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(critic(x)[:1], critic(x[:1]), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    with pytest.raises(ValueError, match='must not use BatchNorm'): Critic(32, norm='batch')


@pytest.mark.parametrize('build', [lambda: image_vae(100), lambda: ImageEncoder(100), lambda: ImageDecoder(100),
                                   lambda: Critic(100)])
def test_unsupported_resolution(build):
    with pytest.raises(ValueError, match='resolution 100 is not one of 28, 32, 64, 128, 256'): build()


def test_widths_that_do_not_divide_the_resolution():
    with pytest.raises(ValueError, match='pass at most 2 widths'): ImageEncoder(28, 1, widths=[8, 16, 32])


@pytest.mark.parametrize('model', [ImageEncoder(32, width_scale=TINY), Critic(32, width_scale=TINY)])
def test_wrong_image_size_names_both_sizes(model):
    with pytest.raises(ValueError, match=r'\[B, 3, 32, 32\] images but got \[2, 3, 64, 64\]'):
        model(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r'\[B, 3, 32, 32\] images but got \[2, 1, 32, 32\]'):
        model(torch.rand(2, 1, 32, 32))


def test_decoder_rejects_wrong_latent_size():
    with pytest.raises(ValueError, match=r'latents \[B, 128\] but got \[2, 32\]'):
        ImageDecoder(32, width_scale=TINY)(torch.randn(2, 32))
