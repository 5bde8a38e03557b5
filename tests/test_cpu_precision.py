"""bf16 autocast and channels-last on a CPU (issue #15): the trainer's automatic decision, float32 where the losses need
it, the layout really applied, the decision in checkpoints and image manifests, and resuming a checkpoint written
before the decision existed. Tiny models and a few iterations: seconds on one core."""
import pytest
import torch

import asintrovae.losses as losses_mod
import asintrovae.train as train_mod
from asintrovae.data import TensorBatches
from asintrovae.losses import ASIntroVAELoss, Betas, SoftIntroVAELoss, encode, kl_to_prior, reconstruction_error
from asintrovae.models import image_vae
from asintrovae.train import Trainer, TrainConfig, precision_plan

BF16_CPU = dict(avx512_f=True, avx512_bf16=True, amx_bf16=True)     # the flags of this project's development CPU
AVX2_CPU = dict(avx2=True)                                           # no bf16 units: bf16 would be emulated
PLAIN_CPU = dict()                                                   # neither AVX2 nor bf16 units: nothing measured
BETAS = Betas(beta_kl=1.0, beta_rec=1.0, beta_neg=256.0)


def _images(n=32, channels=1, side=28, seed=0):
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _trainer(cfg=None, checkpoint=None, loss=None):
    torch.manual_seed(0)
    model = image_vae(28, 1, z_dim=8, width_scale=1/16)
    cfg = cfg or TrainConfig(iterations=2, warmup=1, log_every=1, checkpoint_every=2, progress=False)
    return Trainer(model, loss or SoftIntroVAELoss(BETAS), TensorBatches(_images(), 8, seed=0), cfg, checkpoint=checkpoint)


def _stopped_after(trainer, n):
    "Fit `trainer` until it asks for batch n+1, as if the run were killed there; returns the trainer."
    next_batch, count = trainer.batches.next, [0]
    def next_or_stop():
        count[0] += 1
        if count[0] > n: raise KeyboardInterrupt
        return next_batch()
    trainer.batches.next = next_or_stop
    with pytest.raises(KeyboardInterrupt): trainer.fit()
    return trainer


def _conv_weights(model): return [p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1]


def _all_channels_last(model): return all(p.is_contiguous(memory_format=torch.channels_last) for p in _conv_weights(model))


def _all_contiguous(model): return all(p.is_contiguous() for p in _conv_weights(model))


@pytest.mark.parametrize('caps, expected', [(BF16_CPU, (True, True)), (AVX2_CPU, (False, True)), (PLAIN_CPU, (False, False))])
def test_the_default_decides_by_the_cpu(monkeypatch, caps, expected):
    """True (the default) turns both on for a CPU with bf16 units and AVX-512; on an AVX2 CPU without bf16 units only
    channels-last (measured: benchmarks/results/image_throughput_cpu_avx2.md); neither where nothing was measured."""
    if expected[1] and not torch.backends.mkldnn.is_available(): pytest.skip('channels-last is chosen only with oneDNN')
    monkeypatch.setattr(train_mod, 'cpu_capabilities', lambda: caps)
    t = _trainer()
    assert (t.amp, t.channels_last) == expected and (t.precision['amp'], t.precision['channels_last']) == expected
    assert (_all_channels_last if expected[1] else _all_contiguous)(t.model)
    assert ('AVX-512 BF16' in t.precision['why']) == expected[0]


@pytest.mark.parametrize('amp, channels_last', [(False, False), ('always', 'always'), (False, 'always'), ('always', False)])
def test_forced_settings_win_over_the_cpu(monkeypatch, amp, channels_last):
    "False is off on a capable CPU, 'always' is on on a CPU without bf16 units."
    monkeypatch.setattr(train_mod, 'cpu_capabilities', lambda: BF16_CPU if amp is False else AVX2_CPU)
    t = _trainer(TrainConfig(iterations=2, warmup=1, log_every=1, progress=False, amp=amp, channels_last=channels_last))
    assert (t.amp, t.channels_last) == (amp == 'always', channels_last == 'always')
    assert f'amp={amp!r}' in t.precision['why'] and f'channels_last={channels_last!r}' in t.precision['why']


def test_toys_keep_their_own_precision_on_a_cpu(monkeypatch):
    "The 2-D toys never autocast on a CPU, however capable: toy_vae(precision=...) decides."
    from asintrovae.models import toy_vae
    from asintrovae.train import ToyBatches
    monkeypatch.setattr(train_mod, 'cpu_capabilities', lambda: BF16_CPU)
    t = Trainer(toy_vae(members=2, hidden=16), SoftIntroVAELoss(Betas()), ToyBatches('8gaussians', 2, 16), TrainConfig(iterations=2, progress=False))
    assert not t.amp and not t.channels_last and 'toy' in t.precision['why']


def test_under_cpu_bf16_autocast_posterior_losses_and_as_distance_are_float32():
    """The convolutions run in bf16, but the posterior, the decoded image (float32 output layers), reconstruction errors,
    KLs, AS distance and losses are float32 and finite."""
    torch.manual_seed(0)
    model = image_vae(28, 1, z_dim=8, width_scale=1/16).to(memory_format=torch.channels_last)
    x = (_images(16).float()/255).contiguous(memory_format=torch.channels_last)
    noise = torch.randn(16, 8)
    seen = []                                                           # the dtypes the AS distance is given
    def spy(*args, **kw): seen.extend(a.dtype for a in args[:4]); return as_distance(*args, **kw)
    as_distance = losses_mod.as_distance_logvar
    with pytest.MonkeyPatch.context() as mp, torch.autocast('cpu', dtype=torch.bfloat16):
        mp.setattr(losses_mod, 'as_distance_logvar', spy)
        assert model.decoder.body[:-1](model.decoder.fc(noise).view(16, -1, 7, 7)).dtype == torch.bfloat16   # autocast is on
        mu, logvar = encode(model, x)
        x_hat = model.decode(mu)
        rec, kl = reconstruction_error(x, x_hat, 1), kl_to_prior(mu, logvar)
        loss = ASIntroVAELoss(BETAS, total_iterations=1000)                                  # c < 1: the AS term is on
        loss_e, logs_e, cache = loss.encoder_loss(model, x, noise, 10)
        loss_d, logs_d = loss.decoder_loss(model, x, noise, 10, cache)
        loss_s, logs_s, _ = SoftIntroVAELoss(BETAS).encoder_loss(model, x, noise, 10)
    for name, t in dict(x_hat=x_hat, mu=mu, logvar=logvar, rec=rec, kl=kl, loss_e=loss_e, loss_d=loss_d, loss_s=loss_s,
                        as_distance=logs_e['as_distance'], dec_as_distance=logs_d['as_distance'],
                        exp_elbo_fake=logs_e['exp_elbo_fake'], **{f'cache_{k}': v for k, v in cache.items()}).items():
        assert t.dtype == torch.float32, (name, t.dtype)
        assert torch.isfinite(t).all(), name
    assert seen and set(seen) == {torch.float32}, seen                  # both steps' AS distances got float32 posteriors


def test_the_trainer_applies_the_layout_and_autocast_to_model_and_batch():
    """With both on: conv weights and every training batch are channels-last, the decoder's body runs in bf16 and its
    output layer in float32, and training is finite."""
    torch.manual_seed(0)                                                # 3 channels: channels-last differs from contiguous
    t = Trainer(image_vae(32, 3, z_dim=8, width_scale=1/16), SoftIntroVAELoss(BETAS), TensorBatches(_images(32, 3, 32), 8),
                TrainConfig(iterations=3, warmup=1, log_every=1, progress=False, amp='always', channels_last='always'))
    batches, body, outputs, step = [], [], [], t.train_step
    t.train_step = lambda x, noise, it: batches.append(x) or step(x, noise, it)
    t.model.decoder.body[-2].register_forward_hook(lambda m, i, o: body.append(o.dtype))
    t.model.decoder.register_forward_hook(lambda m, i, o: outputs.append(o.dtype))
    t.fit()
    assert _all_channels_last(t.model) and not _all_contiguous(t.model)
    assert len(batches) == 3 and all(b.is_contiguous(memory_format=torch.channels_last) and not b.is_contiguous() for b in batches)
    assert body and set(body) == {torch.bfloat16} and outputs and set(outputs) == {torch.float32}
    assert all(torch.isfinite(torch.tensor(v)).all() for row in t.history['logs'] for k, v in row.items() if k != 'it')
    assert all(p.dtype == torch.float32 for p in t.model.parameters())  # the weights stay float32 (autocast, not .bfloat16())


CFG4 = dict(iterations=4, warmup=1, log_every=1, checkpoint_every=2, progress=False)


def test_checkpoints_record_the_decision_and_a_resumed_run_keeps_it(tmp_path, monkeypatch):
    "A run started in float32, contiguous, on a CPU where neither pays and resumed on one where both do continues as it was."
    ck = tmp_path/'run.pt'
    monkeypatch.setattr(train_mod, 'cpu_capabilities', lambda: PLAIN_CPU)
    first = _stopped_after(_trainer(TrainConfig(**CFG4), checkpoint=ck), 3)
    assert torch.load(ck, weights_only=False)['precision'] == first.precision and not first.amp
    monkeypatch.setattr(train_mod, 'cpu_capabilities', lambda: BF16_CPU)
    resumed = _trainer(TrainConfig(**CFG4), checkpoint=ck)
    assert resumed.amp and resumed.channels_last                        # what this CPU would choose for a new run...
    resumed.fit()
    assert resumed.it == 4 and not resumed.amp and not resumed.channels_last and _all_contiguous(resumed.model)  # ...not on resume
    assert 'resumed as its checkpoint was trained' in resumed.precision['why']
    assert torch.load(ck, weights_only=False)['precision'] == resumed.precision


def test_a_checkpoint_from_before_the_decision_resumes_as_it_was_trained(tmp_path, monkeypatch):
    "A checkpoint with the old-style config (amp=True meant: on CUDA only) and no record resumes on a CPU, in float32,"
    " exactly as the run that was never interrupted."
    monkeypatch.setattr(train_mod, 'cpu_capabilities', lambda: BF16_CPU)
    ck, fp32 = tmp_path/'old.pt', dict(CFG4, amp=False, channels_last=False)
    _stopped_after(_trainer(TrainConfig(**fp32), checkpoint=ck), 3)
    st = torch.load(ck, weights_only=False)
    del st['precision']; st['config'].update(amp=True, channels_last=True)         # as the trainer wrote it before
    torch.save(st, ck)
    reference = _trainer(TrainConfig(**fp32)); reference.fit()
    resumed = _trainer(TrainConfig(**CFG4), checkpoint=ck)
    resumed.fit()                                                       # the old config compares equal to today's default
    assert resumed.it == 4 and not resumed.amp and not resumed.channels_last
    for k, v in resumed.model.state_dict().items(): assert torch.equal(v, reference.model.state_dict()[k]), k
    assert resumed.history['logs'] == reference.history['logs']


def _tiny_smoke_mnist(monkeypatch):
    import asintrovae.reproduce as rep
    monkeypatch.setattr(rep, 'load_image_set', lambda key, root, n_train, n_test: (_images(64), _images(32, seed=1), 'random images'))
    monkeypatch.setitem(rep.IMAGE_PROFILES['smoke'], 'mnist', {**rep.IMAGE_PROFILES['smoke']['mnist'], 'n_eval': 32, 'epochs': 1,
                                                               'classifier_epochs': 1})
    return rep


@pytest.mark.parametrize('protocol', [None, dict(amp=True)])
def test_image_manifests_record_the_decision(tmp_path, monkeypatch, protocol):
    """run_image_method writes the trainer's decision and its reason into the run's manifest: float32 by default (the
    profiles' amp=False), bf16 where it pays when a protocol asks for amp=True."""
    rep = _tiny_smoke_mnist(monkeypatch)
    assert rep.image_protocol('smoke', 'mnist')['amp'] is False
    m = rep.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path, protocol=protocol)
    assert m['precision'] == precision_plan('cpu', amp=bool(protocol)) and m['precision']['why']
    assert rep.read_json(tmp_path/'mnist'/'s-introvae_seed0.json')['precision'] == m['precision']


def test_a_run_differing_only_in_layout_is_read_back_and_one_in_precision_is_not(tmp_path, monkeypatch):
    "channels_last changes only the order of sums: not part of a run's identity; amp and float32_head are."
    rep = _tiny_smoke_mnist(monkeypatch)
    first = rep.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path, protocol=dict(channels_last=False))
    trained = []
    monkeypatch.setattr(rep, '_train_image_run', lambda *a, **k: trained.append(a) or {'status': 'done'})
    assert rep.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path) == first and not trained
    rep.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path, protocol=dict(amp=True))
    rep.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path, protocol=dict(amp=True, float32_head=False))
    assert len(trained) == 2
