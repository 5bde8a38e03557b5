"""Image metrics (asintrovae.metrics): Frechet distance, FID weights handling and pipeline, PSNR/SSIM/MSE, classifier FD.

The real Inception weights are not available to the tests: FID runs with a random-init network saved under the real
file name (checksum skipped through the explicit test hook), so only relations are tested, never absolute values.
Every test that looks for weights uses a temporary torch home, never the machine's cache.
"""
import math
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_fidelity.feature_extractor_inceptionv3 as tfi
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

import asintrovae.metrics as metrics
from asintrovae.metrics import (FID, INCEPTION_FILES, INCEPTION_SHA256, INCEPTION_URL, ClassifierFD, FrechetStream,
                                InceptionWeightsError, ReconstructionMeter, find_inception_weights, frechet_distance,
                                reconstruction_metrics, reconstruction_scores, sha256_file, to_uint8,
                                train_feature_classifier)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    "A private, empty torch home: the hub cache is tmp/torch/hub/checkpoints."
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    assert Path(torch.hub.get_dir()) == tmp_path/'torch'/'hub'
    ckpt = tmp_path/'torch'/'hub'/'checkpoints'
    ckpt.mkdir(parents=True)
    return ckpt


def random_inception(path, seed=0):
    "Save a He-initialised torch-fidelity Inception-v3 state dict at `path` (not FID weights)."
    with torch.random.fork_rng(devices=[]), mock.patch.object(tfi, 'load_state_dict_from_url', lambda *a, **k: {}), \
         mock.patch.object(tfi.FeatureExtractorInceptionV3, 'load_state_dict', lambda self, sd, *a, **k: None):
        torch.manual_seed(seed)
        net = tfi.FeatureExtractorInceptionV3('inception-v3-compat', ['2048'])
        for m in net.modules():
            if isinstance(m, nn.Conv2d): nn.init.kaiming_normal_(m.weight, nonlinearity='relu')
        torch.save(net.state_dict(), path)


def blobs(n, g, size=28):
    "Two classes of Gaussian blobs: uint8 [n, 1, size, size] and labels [n]."
    labels = torch.randint(0, 2, (n,), generator=g)
    centre = torch.tensor([[0.33, 0.33], [0.66, 0.66]])[labels]*size + 0.07*size*torch.randn(n, 2, generator=g)
    width = (0.08 + 0.04*torch.rand(n, generator=g))*size
    r = torch.arange(size).float()
    d2 = (r[None, :, None] - centre[:, 0, None, None])**2 + (r[None, None, :] - centre[:, 1, None, None])**2
    return to_uint8(torch.exp(-d2/(2*width[:, None, None]**2))[:, None]), labels


def sqrtm_psd(S):
    w, V = np.linalg.eigh(S)
    return (V*np.sqrt(np.clip(w, 0, None))) @ V.T


def closed_form_fd(m1, S1, m2, S2):
    "||m1-m2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), numpy float64."
    r1 = sqrtm_psd(S1)
    return float(((m1 - m2)**2).sum() + np.trace(S1 + S2 - 2*sqrtm_psd(r1 @ S2 @ r1)))


class Identity(nn.Module):
    "Features are the input itself: float [B, d] -> [B, d]."
    def __init__(self, d): super().__init__(); self.num_features = d
    def forward(self, x): return x


# ---------------------------------------------------------------- Frechet distance

def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    for d in (1, 3, 8):
        m1, m2, s1, s2 = rng.normal(size=d), rng.normal(size=d), rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)
        explicit = ((m1 - m2)**2).sum() + ((np.sqrt(s1) - np.sqrt(s2))**2).sum()
        got = frechet_distance(torch.tensor(m1), torch.diag(torch.tensor(s1)), torch.tensor(m2), torch.diag(torch.tensor(s2)))
        assert abs(got - explicit) < 1e-9*max(1, explicit)


def test_frechet_distance_full_covariance_closed_form():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    S1, S2, m1, m2 = A @ A.T + 0.1*np.eye(6), B @ B.T + 0.1*np.eye(6), rng.normal(size=6), rng.normal(size=6)
    t = lambda a: torch.tensor(a)
    assert abs(frechet_distance(t(m1), t(S1), t(m2), t(S2)) - closed_form_fd(m1, S1, m2, S2)) < 1e-8
    assert abs(frechet_distance(t(m1), t(S1), t(m1), t(S1))) < 1e-8
    assert frechet_distance(t(m1), t(S1), t(m2), t(S2)) == pytest.approx(frechet_distance(t(m2), t(S2), t(m1), t(S1)), rel=1e-9)


def test_streamed_samples_converge_to_closed_form():
    "The streaming metric (means and covariances from sums) on samples of two Gaussians approaches the closed form."
    g = torch.Generator().manual_seed(0)
    d, n = 3, 40_000
    m1, m2 = torch.tensor([0., 1., -1.]).double(), torch.tensor([0.5, 0., -1.]).double()
    L1, L2 = torch.tensor([[1., 0, 0], [0.5, 1, 0], [0, 0.3, 0.7]]).double(), torch.diag(torch.tensor([1.5, 0.5, 1.])).double()
    stream = FrechetStream(FrechetInceptionDistance(feature=Identity(d), reset_real_features=False))
    for _ in range(4):                                           # several batches: sums must accumulate
        stream.add_real(m1 + torch.randn(n//4, d, generator=g).double() @ L1.T)
        stream.add_fake(m2 + torch.randn(n//4, d, generator=g).double() @ L2.T)
    exact = closed_form_fd(m1.numpy(), (L1 @ L1.T).numpy(), m2.numpy(), (L2 @ L2.T).numpy())
    assert stream.compute() == pytest.approx(exact, abs=0.05)
    assert (stream.n_real, stream.n_fake) == (n, n)
    stream.reset_fake()
    assert (stream.n_real, stream.n_fake) == (n, 0)


# ---------------------------------------------------------------- FID weights

def test_missing_weights_give_one_clear_error(torch_home):
    with pytest.raises(InceptionWeightsError) as e: FID()
    msg = str(e.value)
    for needle in (INCEPTION_URL, 'torch-fidelity GitHub release', str(torch_home/INCEPTION_FILES[1]), 'absent',
                   'weights=PATH', INCEPTION_SHA256):
        assert needle in msg, needle
    with pytest.raises(InceptionWeightsError, match='nowhere.pth \\(absent\\)'): FID(torch_home/'nowhere.pth')


def test_wrong_checksum_is_refused_before_the_file_is_loaded(torch_home):
    bad = torch_home/INCEPTION_FILES[0]
    bad.write_bytes(b'not the weights')
    with mock.patch('torch.load', side_effect=AssertionError('loaded before the checksum')) as load:
        with pytest.raises(InceptionWeightsError, match=f'SHA-256 {sha256_file(bad)}, expected {INCEPTION_SHA256}'): FID()
        with pytest.raises(InceptionWeightsError, match='expected'): FID(bad)
        load.assert_not_called()
    assert find_inception_weights(verify_sha256=False) == bad           # only the explicit hook skips the check


def test_a_file_with_the_right_checksum_is_found_in_the_hub_cache(torch_home, monkeypatch):
    good = torch_home/INCEPTION_FILES[1]
    good.write_bytes(b'stand-in weights')
    (torch_home/INCEPTION_FILES[0]).write_bytes(b'a wrong file first in the search order')
    monkeypatch.setattr(metrics, 'INCEPTION_SHA256', sha256_file(good))
    assert find_inception_weights() == good
    assert find_inception_weights(good) == good
    assert sha256_file(good) == __import__('hashlib').sha256(b'stand-in weights').hexdigest()


# ---------------------------------------------------------------- FID pipeline (random-init Inception)

def test_fid_pipeline_relations_with_random_inception(torch_home):
    random_inception(torch_home/INCEPTION_FILES[1])
    fid = FID(verify_sha256=False)                                     # found in the (temporary) hub cache
    assert fid.weights == torch_home/INCEPTION_FILES[1]
    assert fid.metric.inception.use_antialias is False                 # TensorFlow-compatible resize
    assert fid.metric.inception.training is False
    g = torch.Generator().manual_seed(0)
    real, real2 = blobs(6, g)[0], blobs(6, g)[0]
    noisy = to_uint8(real/255 + 0.3*torch.randn(real.shape, generator=g))
    fid.add_real(real)
    fid.add_fake(real); same = fid.compute(); fid.reset_fake()
    fid.add_fake(real2); independent = fid.compute(); fid.reset_fake()
    fid.add_fake(noisy); corrupted = fid.compute()
    assert abs(same) < 1e-4*independent                                # float32 features: zero up to rounding
    assert 0 < independent < corrupted
    assert (fid.n_real, fid.n_fake) == (6, 6)
    with pytest.raises(TypeError, match='to_uint8'): fid.add_fake(real.float()/255)


def test_fid_input_is_grayscale_repeated_to_three_channels():
    stream = FID.__new__(FID)
    stream.device = torch.device('cpu')
    x = torch.randint(0, 256, (2, 1, 5, 5), dtype=torch.uint8)
    assert torch.equal(stream.prepare(x), x.repeat(1, 3, 1, 1))
    assert torch.equal(stream.prepare(x.repeat(1, 3, 1, 1)), x.repeat(1, 3, 1, 1))
    with pytest.raises(TypeError): stream.prepare(torch.zeros(2, 2, 5, 5, dtype=torch.uint8))


def test_to_uint8_rounds_and_clamps():
    x = torch.tensor([0., 0.5, 1.0, 1.2, -0.1, 0.998, 1/255, 0.4/255]).view(1, 1, 1, -1)
    assert to_uint8(x).flatten().tolist() == [0, 128, 255, 255, 0, 254, 1, 0]


# ---------------------------------------------------------------- PSNR / SSIM / MSE

def test_constant_error_psnr_and_mse_exact():
    x = torch.full((3, 1, 28, 28), 0.5)
    for e in (0.1, 0.01, 0.3):
        m = reconstruction_metrics(x, x + e)
        assert m['mse'] == pytest.approx(e**2, rel=1e-5)
        assert m['psnr'] == pytest.approx(-10*math.log10(e**2 + 1e-8), abs=1e-3)


def test_psnr_is_averaged_per_image_not_pooled():
    x = torch.full((2, 3, 16, 16), 0.5)
    x_hat = x + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)               # 20 dB and 40 dB
    m = reconstruction_metrics(x, x_hat)
    assert m['psnr'] == pytest.approx(30.0, abs=1e-3)                    # pooled MSE would give about 23 dB
    assert m['mse'] == pytest.approx((0.01 + 0.0001)/2, rel=1e-5)


def test_ssim_identity_noise_and_valid_region_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=g)
    assert reconstruction_metrics(x, x)['ssim'] == pytest.approx(1.0, abs=1e-6)
    ssims = [reconstruction_metrics(x, x + s*torch.randn(x.shape, generator=g))['ssim'] for s in (0.01, 0.05, 0.2, 0.5)]
    assert all(a > b for a, b in zip(ssims, ssims[1:])) and ssims[0] < 1
    y = (x + 0.2*torch.randn(x.shape, generator=g)).clamp(0, 1)
    k = torch.exp(-(torch.arange(11.) - 5)**2/(2*1.5**2)); k = k[:, None]*k[None]/k.sum()**2
    blur = lambda t: F.conv2d(t, k[None, None])
    mx, my = blur(x), blur(y)
    assert mx.shape[-2:] == (18, 18)                                     # valid region only
    vx, vy, cxy = blur(x*x) - mx**2, blur(y*y) - my**2, blur(x*y) - mx*my
    c1, c2 = 0.01**2, 0.03**2
    by_hand = ((2*mx*my + c1)*(2*cxy + c2)/((mx**2 + my**2 + c1)*(vx + vy + c2))).mean(dim=(1, 2, 3))
    assert torch.allclose(reconstruction_scores(x, y)['ssim'], by_hand, atol=1e-5)


def test_reconstruction_is_clamped_and_streamed():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(10, 3, 32, 32, generator=g)
    x_hat = x + 0.3*torch.randn(x.shape, generator=g)                    # decoder output leaves [0, 1]
    whole = reconstruction_metrics(x, x_hat)
    assert whole == reconstruction_metrics(x, x_hat.clamp(0, 1))
    meter = ReconstructionMeter()
    for i in range(0, 10, 3): meter.update(x[i:i+3], x_hat[i:i+3])
    out = meter.compute()
    assert out['n'] == 10
    for k in ('psnr', 'ssim', 'mse'): assert out[k] == pytest.approx(whole[k], rel=1e-5)


# ---------------------------------------------------------------- classifier Frechet distance

def test_classifier_fd_relations_and_same_code_path():
    g = torch.Generator().manual_seed(0)
    imgs, labels = blobs(512, g)
    clf = train_feature_classifier(imgs, labels, epochs=3, batch_size=32)
    test_imgs, test_labels = blobs(256, g)
    with torch.no_grad(): assert (clf.logits(test_imgs).argmax(1) == test_labels).float().mean() > 0.9
    fd = ClassifierFD(clf)
    assert next(fd.metric.inception.parameters()).requires_grad is False and not fd.metric.inception.training
    assert next(clf.parameters()).requires_grad                          # the caller's classifier is untouched
    fd.add_real(imgs[:256])
    fd.add_fake(test_imgs); independent = fd.compute(); fd.reset_fake()
    shuffled = test_imgs.flatten(1)[:, torch.randperm(28*28, generator=g)].view_as(test_imgs)
    fd.add_fake(shuffled); corrupted = fd.compute()
    assert 0 < independent < corrupted/10
    with torch.no_grad(): fr, ff = clf(imgs[:256]).double(), clf(shuffled).double()
    by_hand = frechet_distance(fr.mean(0), torch.cov(fr.T), ff.mean(0), torch.cov(ff.T))
    assert corrupted == pytest.approx(by_hand, rel=1e-4)


def test_train_feature_classifier_is_seeded_and_leaves_global_rng_alone():
    g = torch.Generator().manual_seed(2)
    imgs, labels = blobs(64, g)
    torch.manual_seed(123); before = torch.rand(1)
    torch.manual_seed(123)
    a = train_feature_classifier(imgs, labels, epochs=1, batch_size=32, seed=5)
    after = torch.rand(1)
    b = train_feature_classifier(imgs, labels, epochs=1, batch_size=32, seed=5)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.num_features == 256 and a(imgs[:3]).shape == (3, 256)          # 2*width channels on a 2x2 grid


# ---------------------------------------------------------------- DDP (two gloo processes on CPU)

def _ddp_worker(rank, world, init, feats_r, feats_f, xs, ys, out):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=init, rank=rank, world_size=world)
    stream = FrechetStream(FrechetInceptionDistance(feature=Identity(feats_r.shape[1]), reset_real_features=False))
    stream.add_real(feats_r[rank::world]); stream.add_fake(feats_f[rank::world])
    meter = ReconstructionMeter()
    meter.update(xs[rank::world], ys[rank::world])
    torch.save(dict(fd=stream.compute(), n_real=stream.n_real, rec=meter.compute()), f'{out}/{rank}.pt')
    dist.destroy_process_group()


def test_streams_sum_over_two_gloo_processes(tmp_path):
    "Each rank adds half the data; compute() gives every rank the value of the union (states all-reduced)."
    g = torch.Generator().manual_seed(0)
    fr, ff = torch.randn(40, 4, generator=g).double(), 0.5 + 2*torch.randn(40, 4, generator=g).double()
    xs = torch.rand(6, 1, 28, 28, generator=g); ys = (xs + 0.1*torch.randn(xs.shape, generator=g)).clamp(0, 1)
    single = FrechetStream(FrechetInceptionDistance(feature=Identity(4), reset_real_features=False))
    single.add_real(fr); single.add_fake(ff)
    torch.multiprocessing.start_processes(_ddp_worker, args=(2, f'file://{tmp_path}/rendezvous', fr, ff, xs, ys, str(tmp_path)),
                                          nprocs=2, start_method='fork')    # fork: the children need no imports
    whole = reconstruction_metrics(xs, ys)
    for rank in range(2):
        res = torch.load(tmp_path/f'{rank}.pt')
        assert res['fd'] == pytest.approx(single.compute(), rel=1e-9)
        assert res['n_real'] == 20                                         # local sums restored after the sync
        assert res['rec']['n'] == 6 and res['rec']['ssim'] == pytest.approx(whole['ssim'], rel=1e-5)


# ---------------------------------------------------------------- FID during training (FID-vs-epoch curves)

def test_fid_is_scored_during_training_when_weights_are_found(torch_home, monkeypatch):
    "With weights in the hub cache (here random-init ones whose checksum we accept), every evaluation row has an FID."
    from asintrovae.data import TensorBatches
    from asintrovae.losses import Betas, make_loss
    from asintrovae.models import image_vae
    from asintrovae.reproduce import ImageEvaluator
    from asintrovae.train import Trainer, TrainConfig
    weights = torch_home/INCEPTION_FILES[1]
    random_inception(weights)
    monkeypatch.setattr(metrics, 'INCEPTION_SHA256', sha256_file(weights))
    g = torch.Generator().manual_seed(0)
    train, test = blobs(64, g)[0], blobs(8, g)[0]
    clf = train_feature_classifier(*blobs(64, g), epochs=1)
    evaluator = ImageEvaluator(train, test, clf, z_dim=8, n_eval=8)
    assert evaluator.no_fid is None and set(evaluator.streams) == {'cfd', 'fid'}
    torch.manual_seed(0)
    model = image_vae(28, 1, z_dim=8, width_scale=1/16)
    t = Trainer(model, make_loss('s-introvae', Betas(1.0, 1.0, 256.0), 4), TensorBatches(train, 16), 
                TrainConfig(iterations=4, warmup=0, eval_every=2, log_every=2, progress=False),
                evaluate=lambda m: {k: v for k, v in evaluator(m).items() if k != '_samples'})
    t.fit()
    rows = t.history['evals']
    assert [r['it'] for r in rows] == [2, 4]
    assert all(np.isfinite(r['fid']) and r['fid'] > 0 and np.isfinite(r['cfd']) and 'psnr' in r for r in rows)
    assert rows[0]['fid'] != rows[1]['fid']                              # the fakes are re-scored, the real statistics kept
    assert evaluator.streams['fid'].n_real == 8


def test_without_weights_the_evaluator_says_why_there_is_no_fid(torch_home):
    from asintrovae.reproduce import ImageEvaluator
    g = torch.Generator().manual_seed(0)
    train = blobs(16, g)[0]
    ev = ImageEvaluator(train, train[:4], train_feature_classifier(*blobs(16, g), epochs=1), z_dim=8, n_eval=4)
    assert set(ev.streams) == {'cfd'} and 'Inception-v3 weights' in ev.no_fid and INCEPTION_FILES[1] in ev.no_fid
