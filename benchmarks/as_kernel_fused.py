"""The AS distance (Eq. 7) forward and backward at the toys' stack size, eager against the fused compiled path
(`asintrovae.kernel.log_sum_kernel_fused`, the kernel chapter's section 3.1), in one process.

Each figure is the median over alternating rounds (eager, fused, eager, fused, ...) of the seconds for one D of Eq. 7
between two [members, batch, d] stacks of posteriors, forward plus backward to all four inputs. The first fused call
(compilation) is not timed; its seconds are reported apart.

Usage: python benchmarks/as_kernel_fused.py [--members 20] [--batch 512] [--dims 2] [--rounds 5] [--threads 1]
       [--out benchmarks/results]
"""
import argparse, json, os, platform, statistics, time
from pathlib import Path

import torch

from asintrovae.kernel import as_distance_logvar


def stacks(members, batch, dims, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(members, batch, dims, generator=g) + s for s in (0, 0.3)] + \
           [0.3*torch.randn(members, batch, dims, generator=g) - 2 for _ in range(2)]


def seconds(kernel, ins, fused):
    "One D forward and backward (seconds); ASINTROVAE_FUSED_KERNEL=0 forces the eager path."
    os.environ['ASINTROVAE_FUSED_KERNEL'] = '1' if fused else '0'
    mu_r, lv_r, mu_g, lv_g = [t.clone().requires_grad_() for t in ins]
    t0 = time.perf_counter()
    as_distance_logvar(mu_r, lv_r, mu_g, lv_g, kernel=kernel).sum().backward()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--members', type=int, default=20)
    p.add_argument('--batch', type=int, default=512)
    p.add_argument('--dims', type=int, default=2)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--kernels', nargs='+', default=['paper', 'marginal'])
    p.add_argument('--out', default='benchmarks/results')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ins, rows = stacks(a.members, a.batch, a.dims), []
    for kernel in a.kernels:
        first = seconds(kernel, ins, True)                     # compiles the forward and the backward
        t = {False: [], True: []}
        for _ in range(a.rounds):
            for fused in (False, True): t[fused].append(seconds(kernel, ins, fused))
        e, f = statistics.median(t[False]), statistics.median(t[True])
        rows.append(dict(kernel=kernel, eager_s=e, fused_s=f, speedup=e/f, first_fused_call_s=first))
        print(f'{kernel}: eager {e:.3f} s, fused {f:.3f} s ({e/f:.1f}x); first fused call (compiling) {first:.1f} s', flush=True)
    res = dict(rows=rows, members=a.members, batch=a.batch, dims=a.dims, rounds=a.rounds, threads=a.threads, torch=torch.__version__,
               machine=f'{platform.machine()} CPU, {os.cpu_count()} cores', when=time.strftime('%Y-%m-%d %H:%M'),
               timing='median over alternating rounds in one process, one D of Eq. 7 forward + backward')
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out)/'as_kernel_fused.json').write_text(json.dumps(res, indent=2))


if __name__ == '__main__':
    main()
