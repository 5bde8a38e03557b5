"""Throughput of the 2-D toy runs (issue #11: Table 1 speed): a stack of E members against a plain float32 loop that
trains one run at a time, for Soft-IntroVAE and AS-IntroVAE, measured in one process.

Variants, all with the same model (the reference toy MLP, 4 ReLU layers of 256), loss and batch size:

  one-at-a-time float32  one single-member model with the eager AS distance (ASINTROVAE_FUSED_KERNEL=0); E runs take E
                         times its iteration time (the baseline: the plain loop)
  one-at-a-time fused    the same with the fused compiled AS distance (AS-IntroVAE only; `log_sum_kernel_fused`)
  stacked float32        one model of E members (`asintrovae.models.StackedLinear`), fused AS distance
  stacked bf16           the same with the hidden-to-hidden layers under bf16 autocast (`toy_vae(precision='bf16')`);
                         input and output layers, posterior, losses and sampling stay float32

The variants are timed in alternating rounds (A B C A B C ...) so that a drift of the shared machine hits them alike;
each figure is the median over rounds of the seconds per iteration. run-iterations/s = members / seconds per
iteration. The AS term stays active (c < 1) for the whole timing. Thread counts are measured one after another in the
same process; `--processes 2` also times two processes of one thread, each training half of the stack, side by side.

Usage: python benchmarks/toy_stacked.py [--members 20] [--batch 512] [--iters 4] [--rounds 3] [--threads 1 2]
       [--processes 2] [--out benchmarks/results]
"""
import argparse, json, os, platform, statistics, time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from asintrovae.losses import Betas, make_loss
from asintrovae.models import toy_vae
from asintrovae.train import ToyBatches, Trainer, TrainConfig

METHODS = ('s-introvae', 'as-introvae')


def trainer(method, members, batch, precision):
    "A Trainer for `members` stacked runs, past its first (untimed) iterations."
    torch.manual_seed(0)
    loss = make_loss(method, Betas.stacked([(0.3, 0.2, 0.9)]*members), total_iterations=10**9)   # c stays < 1
    cfg = TrainConfig(iterations=2, warmup=0, log_every=10**9, checkpoint_every=10**9, progress=False)
    tr = Trainer(toy_vae(members=members, precision=precision), loss, ToyBatches('8gaussians', members, batch), cfg)
    tr.fit()
    return tr


def seconds_per_iteration(tr, iters, fused=True):
    os.environ['ASINTROVAE_FUSED_KERNEL'] = '1' if fused else '0'
    tr.cfg.iterations = tr.it + iters
    t0 = time.perf_counter(); tr.fit()
    return (time.perf_counter() - t0)/iters


def measure(method, members, batch, iters, rounds):
    "Median seconds per iteration of each variant, timed in alternating rounds -> {variant: (members, seconds)}."
    variants = {'one-at-a-time float32': (1, 'float32', False), 'stacked float32': (members, 'float32', True), 'stacked bf16': (members, 'bf16', True)}
    if method.startswith('as-'): variants['one-at-a-time fused'] = (1, 'float32', True)
    trs = {}
    for k, (e, p, fused) in variants.items():
        os.environ['ASINTROVAE_FUSED_KERNEL'] = '1' if fused else '0'; trs[k] = trainer(method, e, batch, p)
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, tr in trs.items(): times[k].append(seconds_per_iteration(tr, iters, variants[k][2]))
    return {k: (variants[k][0], statistics.median(v)) for k, v in times.items()}


def _half_stack(args):
    method, members, batch, iters, precision = args
    torch.set_num_threads(1)
    tr = trainer(method, members, batch, precision)
    return seconds_per_iteration(tr, iters)


def two_processes(method, members, batch, iters, precision):
    "Two 1-thread processes side by side, each training members/2 runs -> run-iterations/s of both together."
    with mp.get_context('spawn').Pool(2) as pool:
        secs = pool.map(_half_stack, [(method, members//2, batch, iters, precision)]*2)
    return 2*(members//2)/max(secs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--members', type=int, default=20)
    p.add_argument('--batch', type=int, default=512)
    p.add_argument('--iters', type=int, default=4)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    p.add_argument('--processes', type=int, default=0, help='2: also time two 1-thread processes of half the stack each')
    p.add_argument('--out', default='benchmarks/results')
    a = p.parse_args()
    rows = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        for method in METHODS:
            res = measure(method, a.members, a.batch, a.iters, a.rounds)
            base = res['one-at-a-time float32'][0]/res['one-at-a-time float32'][1]
            for k, (e, s) in res.items():
                rows.append(dict(method=method, threads=threads, variant=k, members=e, batch=a.batch, seconds_per_iteration=s,
                                 run_its_per_s=e/s, vs_one_at_a_time=e/s/base))
            print(f'{method} {threads} thread(s): ' + ', '.join(f'{k} {e/s:.1f} run-it/s' for k, (e, s) in res.items()), flush=True)
    if a.processes == 2:
        for method in METHODS:
            for precision in ('float32', 'bf16'):
                r = two_processes(method, a.members, a.batch, a.iters*a.rounds, precision)
                rows.append(dict(method=method, threads='2 processes x 1', variant=f'stacked {precision}', members=a.members,
                                 batch=a.batch, run_its_per_s=r))
                print(f'{method} two 1-thread processes, stacked {precision}: {r:.1f} run-it/s', flush=True)
    print('\n| method | threads | variant | members | run-iterations/s | vs one-at-a-time float32 (same threads) |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        ratio = f"{r['vs_one_at_a_time']:.1f}x" if 'vs_one_at_a_time' in r else '-'
        print(f"| {r['method']} | {r['threads']} | {r['variant']} | {r['members']} | {r['run_its_per_s']:.1f} | {ratio} |")
    res = dict(rows=rows, batch=a.batch, members=a.members, iters_per_round=a.iters, rounds=a.rounds, torch=torch.__version__,
               machine=f'{platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs)',
               timing='median over alternating rounds in one process', when=time.strftime('%Y-%m-%d %H:%M'))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out)/'toy_stacked.json').write_text(json.dumps(res, indent=2))


if __name__ == '__main__':
    main()
