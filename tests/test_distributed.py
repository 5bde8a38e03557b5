"""Data-parallel training over torch.distributed, checked with two CPU processes on the gloo backend."""
import os
import sys

import torch

WORKER = r'''
import sys, torch, torch.distributed as dist
from asintrovae.losses import Betas, make_loss
from asintrovae.models import toy_vae
from asintrovae.train import ToyBatches, Trainer, TrainConfig, rank_seed, world_size
init, out, method, reduce_grads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == '1'
rank, world = int(sys.argv[5]), int(sys.argv[6])
dist.init_process_group('gloo', init_method=init, rank=rank, world_size=world)
torch.manual_seed(100 + rank)                       # different initial weights per rank: the broadcast must fix that
model = toy_vae(members=2, hidden=16)
cfg = TrainConfig(iterations=30, warmup=10, milestones=(20,), log_every=10, progress=False)
t = Trainer(model, make_loss(method, Betas.stacked([(0.3, 0.2, 0.9)]*2), 30), ToyBatches('8gaussians', 2, 32, seed=rank_seed(0)), cfg)
t.distributed = reduce_grads and world_size() > 1
t.fit()
torch.save({k: v.clone() for k, v in model.state_dict().items()}, f'{out}/rank{rank}.pt')
dist.barrier(); dist.destroy_process_group()
'''


def _launch(tmp_path, method, reduce_grads):
    import subprocess
    script = tmp_path/'worker.py'; script.write_text(WORKER)
    init = f'file://{tmp_path}/store_{method}_{int(reduce_grads)}'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    procs = [subprocess.Popen([sys.executable, str(script), init, str(tmp_path), method, str(int(reduce_grads)), str(r), '2'], env=env)
             for r in range(2)]
    assert all(p.wait(timeout=240) == 0 for p in procs)
    return [torch.load(tmp_path/f'rank{r}.pt') for r in range(2)]


def test_two_gloo_processes_stay_in_sync(tmp_path):
    "With gradients averaged, both ranks hold identical weights after training on different data."
    for method in ('s-introvae', 'as-introvae'):
        a, b = _launch(tmp_path, method, reduce_grads=True)
        assert all(torch.equal(a[k], b[k]) for k in a), method


def test_without_gradient_averaging_the_ranks_drift(tmp_path):
    "The check above is not vacuous: with the same start but no all-reduce, different data makes the ranks differ."
    a, b = _launch(tmp_path, 's-introvae', reduce_grads=False)
    assert any(not torch.equal(a[k], b[k]) for k in a)
