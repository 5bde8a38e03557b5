"""Stacked vs one-after-another training of the 2-D toy runs (issue: Table 1 speed).

Table 1 is many small runs: methods x configurations x seeds. asintrovae trains all (configuration, seed) members of a
method as one stacked model (batched matmuls, `asintrovae.models.StackedLinear`). This script measures, in one process,
the training throughput both ways for the same runs on the same data sizes:

  stacked:    one model of E members, N iterations           -> E*N run-iterations in t_stacked
  sequential: one single-member model, N iterations, times E -> E*N run-iterations in E*t_single

and reports run-iterations per second for both and their ratio, then extrapolates the wall time of the `laptop` and
`paper` profiles of nbs/experiments/toy_2d.ipynb from the measured per-iteration costs.

Usage: python benchmarks/toy_stacked.py [--members 12] [--batch 128] [--iters 60] [--threads 2] [--out benchmarks/results]
"""
import argparse, json, os, platform, time
from pathlib import Path

import torch

from asintrovae.losses import Betas, make_loss
from asintrovae.models import toy_vae
from asintrovae.train import ToyBatches, Trainer, TrainConfig


def seconds_per_iteration(method, members, batch, iters, hidden=256, warm=10):
    "Median-free simple timing: warm up, then time `iters` training iterations of a stack of `members` models."
    torch.manual_seed(0)
    betas = Betas.stacked([(0.3, 0.2, 0.9)]*members)
    loss = make_loss(method, betas, total_iterations=10**9)       # AS term stays active (c < 1) for the whole timing
    cfg = TrainConfig(iterations=warm, warmup=0, log_every=10**9, progress=False)
    tr = Trainer(toy_vae(members=members, hidden=hidden), loss, ToyBatches('8gaussians', members, batch), cfg)
    tr.fit()
    tr.cfg.iterations = warm + iters
    t0 = time.perf_counter(); tr.fit()
    return (time.perf_counter() - t0)/iters


def profile_seconds(per_it, iterations, warmup, as_fraction=0.2):
    "Wall seconds of one method's stack: warm-up at VAE cost, AS active for a fifth of the rest, the rest at S-IntroVAE cost."
    rest = iterations - warmup
    out = {'vae': iterations*per_it['vae']}
    out['introvae'] = warmup*per_it['vae'] + rest*per_it['s-introvae']
    out['s-introvae'] = out['introvae']
    for k in ('as-introvae', 'as-introvae-official', 'as-introvae-cosine', 'as-introvae-marginal'):
        out[k] = warmup*per_it['vae'] + as_fraction*rest*per_it[k] + (1 - as_fraction)*rest*per_it['s-introvae']
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--members', type=int, default=12)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--iters', type=int, default=60)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', default='benchmarks/results')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for method in ('s-introvae', 'as-introvae'):
        t_stack = seconds_per_iteration(method, a.members, a.batch, a.iters)
        t_one = seconds_per_iteration(method, 1, a.batch, a.iters)
        rows.append(dict(method=method, members=a.members, batch=a.batch,
                         stacked_run_its_per_s=a.members/t_stack, sequential_run_its_per_s=1/t_one, speedup=a.members*t_one/t_stack))
    print(f'| method | members | batch | stacked (run-iterations/s) | one after another (run-iterations/s) | ratio |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['method']} | {r['members']} | {r['batch']} | {r['stacked_run_its_per_s']:.1f} | {r['sequential_run_its_per_s']:.1f} | {r['speedup']:.1f}x |")
    # per-iteration costs of every Table 1 method at the laptop and paper stack sizes, for the extrapolation
    methods = ('vae', 's-introvae', 'as-introvae', 'as-introvae-official', 'as-introvae-cosine', 'as-introvae-marginal')
    extrapolation = {}
    for name, members, batch, iterations, warmup in (('laptop', 12, 128, 4000, 300), ('paper', 20, 512, 30000, 2000)):
        per_it = {m: seconds_per_iteration(m, members, batch, max(5, a.iters//4), warm=3) for m in methods}
        secs = profile_seconds(per_it, iterations, warmup)
        extrapolation[name] = dict(members=members, batch=batch, iterations=iterations, seconds_per_iteration=per_it,
                                   method_seconds=secs, total_hours=sum(secs.values())/3600)
        print(f"{name}: {members} members x batch {batch} x {iterations} iterations per method, 7 methods: "
              f"{sum(secs.values())/3600:.2f} h extrapolated from {max(5, a.iters//4)} timed iterations per method")
    res = dict(rows=rows, extrapolation=extrapolation, threads=a.threads, torch=torch.__version__,
               machine=f'{platform.machine()} CPU, {os.cpu_count()} cores', when=time.strftime('%Y-%m-%d %H:%M'))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out)/'toy_stacked.json').write_text(json.dumps(res, indent=2))


if __name__ == '__main__':
    main()
