"""Unit tests of the toy library parts: data, models, losses, trainer and metrics."""
import json, math

import numpy as np
import pytest
import torch

from asintrovae.data import TOY_SETS, sample_toy, toy_range
from asintrovae.losses import Betas, make_loss, kl_to_prior, mean_exp
from asintrovae.metrics import toy_kl_jsd, toy_noise_floor
from asintrovae.models import toy_vae
from asintrovae.train import CheckpointError, NonFiniteLossError, ToyBatches, Trainer, TrainConfig

METHODS = ['vae', 'introvae', 's-introvae', 'as-introvae', 'as-introvae-marginal']


@pytest.mark.parametrize('name', TOY_SETS)
def test_toy_sets_on_window_and_seeded(name):
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = sample_toy(name, 1000, g1), sample_toy(name, 1000, g2)
    assert torch.equal(a, b) and a.shape == (1000, 2) and a.abs().max() < toy_range(name)


def _fixed_batch_descent(method):
    "Train each network on its own loss for a fixed batch and fixed noise; return (first, last) per step kind."
    torch.manual_seed(0)
    model = toy_vae(members=2, hidden=32)
    x, noise = sample_toy('8gaussians', 256, torch.Generator().manual_seed(1)).view(2, 128, 2), torch.randn(2, 128, 2)
    loss = make_loss(method, Betas.stacked([(0.3, 0.2, 0.9), (0.5, 0.1, 0.9)]), total_iterations=1000)
    out = []
    def run(fn, params):
        opt = torch.optim.Adam(params, lr=2e-3)
        vals = []
        for _ in range(40):
            torch.manual_seed(5)
            v = fn().sum(); vals.append(v.item())
            opt.zero_grad(); v.backward(); opt.step()
        return vals[0], vals[-1]
    enc, dec = list(model.encoder.parameters()), list(model.decoder.parameters())
    if loss.joint: return [run(lambda: loss.joint_loss(model, x, noise, 10)[0], enc + dec)]
    for p in dec: p.requires_grad_(False)
    out.append(run(lambda: loss.encoder_loss(model, x, noise, 10)[0], enc))
    for p in dec: p.requires_grad_(True)
    for p in enc: p.requires_grad_(False)
    torch.manual_seed(5); cache = loss.encoder_loss(model, x, noise, 10)[2]
    out.append(run(lambda: loss.decoder_loss(model, x, noise, 10, cache)[0], dec))
    return out


@pytest.mark.parametrize('method', METHODS)
def test_each_loss_decreases_on_a_fixed_batch(method):
    for first, last in _fixed_batch_descent(method):
        assert math.isfinite(last) and last < first


def test_stacked_members_train_independently():
    "Member 0's loss gives no gradient to member 1's parameters (the basis of training seeds together)."
    model = toy_vae(members=2, hidden=16)
    loss = make_loss('as-introvae', Betas(), 100)
    x, noise = torch.randn(2, 32, 2), torch.randn(2, 32, 2)
    for p in model.decoder.parameters(): p.requires_grad_(False)
    l, _, _ = loss.encoder_loss(model, x, noise, 1)
    l[0].backward()
    assert all(p.grad[1].abs().sum() == 0 for p in model.encoder.parameters())


def _trainer(ckpt=None, iterations=120, batches=None):
    torch.manual_seed(0)
    cfg = TrainConfig(iterations=iterations, warmup=20, milestones=(80,), log_every=20, checkpoint_every=60, progress=False)
    return Trainer(toy_vae(members=2, hidden=32), make_loss('s-introvae', Betas.stacked([(0.3, 0.2, 0.9)]*2), iterations),
                   batches or ToyBatches('8gaussians', 2, 64, seed=1), cfg, checkpoint=ckpt)


def test_resume_continues_identically(tmp_path):
    ref = _trainer(); ref.fit()
    ck = tmp_path/'c.pt'
    first = _trainer(ck)
    # interrupt at iteration 90, after the checkpoint at 60; a fresh trainer in another random state resumes from it
    class Stop(Exception): pass
    class StopAt(ToyBatches):
        def __init__(self): super().__init__('8gaussians', 2, 64, seed=1); self.n = 0
        def next(self):
            self.n += 1
            if self.n > 90: raise Stop
            return super().next()
    first.batches = StopAt()
    with pytest.raises(Stop): first.fit()
    torch.manual_seed(77)
    second = _trainer(ck, batches=ToyBatches('8gaussians', 2, 64, seed=5))
    second.fit()
    for k, v in ref.model.state_dict().items(): assert torch.equal(v, second.model.state_dict()[k]), k
    assert ref.history['logs'] == second.history['logs']


def test_nan_loss_stops_with_a_clear_error():
    class NaNData(ToyBatches):
        def next(self):
            x = super().next(); x[0, 0, 0] = float('nan'); return x
    t = _trainer(batches=NaNData('8gaussians', 2, 64))
    with pytest.raises(NonFiniteLossError, match='NaN/inf at iteration 0') as e:
        t.fit()
    assert e.value.iteration == 0


def test_corrupt_checkpoint_is_named(tmp_path):
    ck = tmp_path/'c.pt'; ck.write_bytes(b'\x00garbage')
    with pytest.raises(CheckpointError, match='unreadable'):
        _trainer(ck).fit()


def test_toy_metric_matches_the_soft_introvae_definition():
    "KL(real||fake) = sum p (log p - log(q + 1e-14)) / 100 over density histograms, by hand with numpy."
    g = torch.Generator().manual_seed(0)
    real, fake = sample_toy('rings', 5000, g), sample_toy('rings', 5000, g) * 1.1
    p = np.histogram2d(*real.numpy().T, bins=100, range=[[-4, 4]]*2, density=True)[0]
    q = np.histogram2d(*fake.numpy().T, bins=100, range=[[-4, 4]]*2, density=True)[0]
    m = 0.5*(p + q)
    kl = np.sum(np.where(p > 0, p*(np.log(np.where(p > 0, p, 1)) - np.log(q + 1e-14)), 0))/100
    kl_m = lambda a: np.sum(np.where(m > 0, m*(np.log(np.where(m > 0, m, 1)) - np.log(a + 1e-14)), 0))/100
    got = toy_kl_jsd(real, fake, 4.0)
    assert math.isclose(got[0], kl, rel_tol=1e-9) and math.isclose(got[1], 0.5*(kl_m(p) + kl_m(q)), rel_tol=1e-9)


def test_noise_floor_8gaussians_matches_design():
    "DESIGN.md: two independent real samples of 8 Gaussians give about 0.7 KL and 0.3 JSD."
    f = toy_noise_floor('8gaussians', pairs=5)
    assert 0.4 < f['kl_mean'] < 0.9 and 0.2 < f['jsd_mean'] < 0.4


def test_mean_exp_and_kl():
    assert torch.allclose(mean_exp(torch.tensor([0., math.log(3.)])), torch.tensor(2.))
    assert torch.allclose(kl_to_prior(torch.tensor([[1., 0.]]), torch.zeros(1, 2)), torch.tensor([0.5]))


@pytest.mark.parametrize('method', ['s-introvae', 'as-introvae'])
def test_bf16_hidden_layers_train_with_float32_outputs(method):
    "precision='bf16': a few training steps stay finite, the posterior and the samples stay float32, and the bf16 model's losses are within bf16 rounding of the float32 model's."
    torch.manual_seed(0)
    m32, m16 = toy_vae(members=2, hidden=64), toy_vae(members=2, hidden=64, precision='bf16')
    m16.load_state_dict(m32.state_dict())
    loss = make_loss(method, Betas.stacked([(0.3, 0.2, 0.9)]*2), 1000)
    x, noise = sample_toy('8gaussians', 256, torch.Generator().manual_seed(1)).view(2, 128, 2), torch.randn(2, 128, 2)
    vals = []
    for m in (m32, m16):
        torch.manual_seed(3)
        l, _, cache = loss.encoder_loss(m, x, noise, 10)
        assert cache['mu'].dtype == torch.float32 and m.sample((2, 5, 2)).dtype == torch.float32
        vals.append(l.detach())
    assert torch.allclose(vals[0], vals[1], rtol=0.05)
    cfg = TrainConfig(iterations=30, warmup=10, log_every=10, progress=False)
    Trainer(m16, loss, ToyBatches('8gaussians', 2, 64, seed=1), cfg).fit()
    assert all(torch.isfinite(p).all() for p in m16.parameters())


def test_manifests_from_before_an_option_existed_are_read_back_only_when_its_default_is_the_old_behaviour(tmp_path):
    "A finished AS-IntroVAE manifest without reduction/squash_kl (added later, defaults = old behaviour) is read back;"
    " one without detach_target (whose default changed the computation) is trained again."
    from asintrovae.reproduce import LOSS_OPTIONS_ADDED, run_toy_method
    cfg = TrainConfig(iterations=6, warmup=2, milestones=(4,), log_every=3, checkpoint_every=100, progress=False)
    first = run_toy_method('as-introvae', '8gaussians', ['C1'], 1, cfg, 16, tmp_path, hidden=16)
    path = tmp_path/'as-introvae.json'
    assert set(LOSS_OPTIONS_ADDED) <= set(first['settings']['loss'])
    old = json.loads(path.read_text())
    for k in LOSS_OPTIONS_ADDED: del old['settings']['loss'][k]
    old['final']['kl'] = [-1.0]                                       # a marker: read back, not retrained
    path.write_text(json.dumps(old))
    assert run_toy_method('as-introvae', '8gaussians', ['C1'], 1, cfg, 16, tmp_path, hidden=16)['final']['kl'] == [-1.0]
    del old['settings']['loss']['detach_target']
    path.write_text(json.dumps(old))
    assert run_toy_method('as-introvae', '8gaussians', ['C1'], 1, cfg, 16, tmp_path, hidden=16)['final']['kl'] != [-1.0]


def test_a_grid_cell_with_table1_weights_reads_table1_runs_and_trains_only_what_is_missing(tmp_path):
    "train_toy_method(shared=...): seed 0 of C3 finished in Table 1's folder is read back as the grid cell's seed 0"
    " (renamed, samples found, source named); seed 1, missing there, is trained in the grid's folder; other weights are refused."
    from asintrovae.reproduce import betas_config, toy_samples, train_toy_method
    cfg = TrainConfig(iterations=6, warmup=2, milestones=(4,), log_every=3, eval_every=3, checkpoint_every=100, progress=False)
    table1, grid = tmp_path/'toy_2d_8gaussians_x', tmp_path/'toy_robustness_8gaussians_x'
    first = train_toy_method('s-introvae', '8gaussians', ['C3'], [0], cfg, 16, table1, stack_by='seed', hidden=16)
    cell = betas_config(0.7, 0.2, 0.9)
    twins = {cell: (table1, 'C3')}
    assert train_toy_method('s-introvae', '8gaussians', [cell], 2, cfg, 16, grid, stack_by='seed', hidden=16, shared=twins, train=False)['shared_from'] \
        == ['toy_2d_8gaussians_x/s-introvae_C3_seed0.json']                               # partial: seed 0 from Table 1, seed 1 not yet
    run = train_toy_method('s-introvae', '8gaussians', [cell], 2, cfg, 16, grid, stack_by='seed', hidden=16, shared=twins)
    assert [(m['config'], m['seed']) for m in run['settings']['members']] == [(cell, 0), (cell, 1)]
    assert run['final']['kl'][0] == first['final']['kl'][0] and run['shared_from'] == ['toy_2d_8gaussians_x/s-introvae_C3_seed0.json']
    assert sorted(p.name for p in grid.glob('*.json')) == [f's-introvae_{cell}_seed1.json']   # only the missing seed was trained here
    assert np.array_equal(toy_samples(run, grid)[0], np.load(table1/'s-introvae_C3_seed0_samples.npz')['samples'][0])
    with pytest.raises(ValueError, match='not the same run'):
        train_toy_method('s-introvae', '8gaussians', [betas_config(0.7, 0.2, 2.0)], 1, cfg, 16, grid, stack_by='seed', hidden=16,
                         shared={betas_config(0.7, 0.2, 2.0): (table1, 'C3')})


def test_claim_run_takes_free_and_stale_locks_and_leaves_live_ones(tmp_path):
    "claim_run: a free lock is claimed (holding 'host pid'); one held by a live process is not; one left by a dead process,"
    " or left empty by a process that died while writing it, is taken over; one from another host is left alone while its"
    " owner touches it (`holding`), and taken over once it has been silent for LOCK_STALE."
    import os, socket, subprocess, sys, time
    from asintrovae.reproduce import claim_run, holding
    host, lock = socket.gethostname(), tmp_path/'r.lock'
    assert claim_run(lock) and lock.read_text() == f'{host} {os.getpid()}'
    assert not claim_run(lock)                                             # held by a live process (this one)
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    lock.write_text(f'{host} {dead.pid}')
    assert claim_run(lock) and lock.read_text() == f'{host} {os.getpid()}'
    lock.write_text(f'another-{host} {os.getpid()}')
    assert not claim_run(lock)                                             # another host's, touched lately: alive
    os.utime(lock, (1, 1)); assert claim_run(lock)                         # ... silent for longer than LOCK_STALE: dead
    lock.write_text(f'{host} {os.getpid()}'); os.utime(lock, (1, 1))
    assert claim_run(lock)                                                 # a live pid that stopped touching it: reused
    lock.write_text(''); os.utime(lock, (1, 1))
    assert claim_run(lock)
    lock.unlink()
    with holding(lock, beat=0.05):                                         # the owner's sign of life
        lock.write_text(f'{host} {os.getpid()}'); os.utime(lock, (1, 1)); time.sleep(0.3)
        assert time.time() - lock.stat().st_mtime < 5 and not claim_run(lock)
    assert not lock.exists()


def test_two_processes_given_the_same_runs_share_them(tmp_path, monkeypatch):
    "train_toy_method with stack_by='seed': a run another live process has claimed is left out (wait=False) or left for last, then read back"
    " when its manifest appears (not trained twice); if that process dies, the run is taken over and trained here."
    " Every lock is released, also when training is interrupted."
    import shutil, socket, subprocess, sys, threading, time
    import asintrovae.reproduce as R
    cfg = TrainConfig(iterations=6, warmup=2, milestones=(4,), log_every=3, eval_every=3, checkpoint_every=100, progress=False)
    elsewhere, here = tmp_path/'elsewhere', tmp_path/'here'
    for s in (0, 2):                                                       # what the other process computes, and its run keys
        R.train_toy_method('s-introvae', '8gaussians', ['C1'], [s], cfg, 16, elsewhere, stack_by='seed', hidden=16)
    key = {s: next(elsewhere.glob(f's-introvae_C1_seed{s}-*.pt')).stem.split('-')[-1] for s in (0, 2)}
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    here.mkdir()
    for s in (0, 2): (here/f's-introvae_C1_seed{s}-{key[s]}.lock').write_text(f'{socket.gethostname()} {other.pid}')
    first = R.train_toy_method('s-introvae', '8gaussians', ['C1'], 3, cfg, 16, here, stack_by='seed', hidden=16, wait=False)
    assert [m['seed'] for m in first['settings']['members']] == [1]                 # wait=False: what nobody holds, at once
    result = {}
    job = threading.Thread(target=lambda: result.update(run=R.train_toy_method(
        's-introvae', '8gaussians', ['C1'], 3, cfg, 16, here, stack_by='seed', hidden=16, poll=0.05)))
    job.start()
    def wait_for(cond, what):
        t0 = time.time()
        while not cond():
            assert time.time() - t0 < 60, f'timed out waiting for {what}'
            time.sleep(0.05)
    try:
        wait_for(lambda: (here/'s-introvae_C1_seed1.json').exists(), 'seed 1, which nobody else claimed')
        time.sleep(0.3)
        assert job.is_alive() and not (here/'s-introvae_C1_seed0.json').exists()     # waiting on seed 0, not training it
        for f in ('s-introvae_C1_seed0_samples.npz', 's-introvae_C1_seed0.json'):     # the other process finishes seed 0,
            shutil.copy(elsewhere/f, here/'copying'); (here/'copying').replace(here/f)  # writing each file atomically
        (here/f's-introvae_C1_seed0-{key[0]}.lock').unlink()                          # ... and releases it
        time.sleep(0.3)
        assert job.is_alive() and not list(here.glob('s-introvae_C1_seed0-*.pt'))    # read back, not trained; now waits on seed 2
        other.kill(); other.wait()                                                    # ... whose owner dies: taken over
        job.join(60)
        assert not job.is_alive()
    finally:
        if other.poll() is None: other.kill()
    run = result['run']
    assert [(m['config'], m['seed']) for m in run['settings']['members']] == [('C1', 0), ('C1', 1), ('C1', 2)]
    assert run['final']['kl'][0] == json.loads((elsewhere/'s-introvae_C1_seed0.json').read_text())['final']['kl'][0]
    assert (here/f's-introvae_C1_seed2-{key[2]}.pt').exists() and not list(here.glob('*.lock'))
    def interrupted(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(R, '_train_toy_run', interrupted)
    with pytest.raises(KeyboardInterrupt):
        R.train_toy_method('s-introvae', '8gaussians', ['C2'], 1, cfg, 16, here, stack_by='seed', hidden=16)
    assert not list(here.glob('*.lock'))
