"""The toy convergence study of issue #11 (started, not yet summarised): Soft-IntroVAE and AS-IntroVAE at the recommended
setting (0.3, 0.2, 0.9), 3 seeds, under several (iterations, batch, warm-up, milestones) protocols, each pair with one
protocol twice as long as the other so that "doubling the iterations changes the seed-mean KL and mode count by less
than the seed spread" can be read off; plus the same at bf16 hidden layers for the fp32-vs-bf16 agreement check.

The plan runs the cheapest protocol first, float32 and bf16 next to each other (the agreement check arrives early).
Every (protocol, precision, method) is one `run_toy_method` stack with its own manifest and checkpoint under
--out/<protocol>_<precision>/, evaluated (toy KL, JSD, modes) every iterations/40 for the KL-vs-iterations curve.
A finished stack is read back, an interrupted one resumes from its checkpoint, so the study is resumed by running the
same command again.

Usage: python tools/toy_convergence.py [--out runs/toy_convergence] [--threads 1] [--only NAME ...] [--list | --summary | --figure]
--summary prints, for every finished stack, the final KL, JSD and modes per seed, their seed mean and sd, and the
seed-mean KL at half the iterations (from the evaluations during training); --figure draws KL and recovered modes
against iterations (log axis) for every finished stack into --out/study.png.
"""
import argparse, json, time
from pathlib import Path

import torch

from asintrovae.reproduce import mean_sd, run_toy_method
from asintrovae.train import TrainConfig

# name: (iterations, batch, warm-up, milestones)
PROTOCOLS = {
    '6k_x512':  (6_000, 512, 400, (4_000, 5_000)),
    '12k_x512': (12_000, 512, 800, (8_000, 10_000)),       # milestones at 2/3 and 5/6
    '15k_x128': (15_000, 128, 1_000, (5_000, 7_500)),      # the paper's schedule shape, half as long
    '30k_x128': (30_000, 128, 2_000, (10_000, 15_000)),    # the paper's iterations, warm-up and milestones at batch 128
    '60k_x128': (60_000, 128, 4_000, (20_000, 30_000)),    # the doubling check of the chosen protocol, 30k_x128
}
S, AS = 's-introvae', 'as-introvae'
PLAN = [('6k_x512', 'float32', S), ('6k_x512', 'bf16', S), ('6k_x512', 'float32', AS), ('6k_x512', 'bf16', AS),
        ('12k_x512', 'float32', S), ('15k_x128', 'float32', S), ('12k_x512', 'float32', AS), ('15k_x128', 'float32', AS),
        ('12k_x512', 'bf16', S), ('30k_x128', 'float32', S), ('30k_x128', 'float32', AS), ('12k_x512', 'bf16', AS),
        ('30k_x128', 'bf16', S), ('30k_x128', 'bf16', AS), ('60k_x128', 'float32', S)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--out', default='runs/toy_convergence')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--only', nargs='*', help='protocol names to run (default: the whole plan)')
    p.add_argument('--list', action='store_true')
    p.add_argument('--summary', action='store_true')
    p.add_argument('--figure', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.summary: return summary(a.out)
    if a.figure: return figure(a.out)
    for name, precision, method in PLAN:
        if a.only and name not in a.only: continue
        iterations, batch, warmup, milestones = PROTOCOLS[name]
        cfg = TrainConfig(iterations=iterations, warmup=warmup, milestones=milestones, log_every=max(iterations//40, 1),
                          eval_every=max(iterations//40, 1), checkpoint_every=max(iterations//20, 1), seed=0, progress=False)
        run_dir = Path(a.out)/f'{name}_{precision}'
        if a.list: print(run_dir/f'{method}.json', (run_dir/f'{method}.json').exists()); continue
        t0 = time.time()
        print(f'{time.strftime("%H:%M:%S")} {name} {precision} {method}: start', flush=True)
        m = run_toy_method(method, '8gaussians', ['recommended'], a.seeds, cfg, batch, run_dir, precision=precision)
        f = m['final']
        print(f'{time.strftime("%H:%M:%S")} {name} {precision} {method}: {m["train_seconds"]:.0f} s training '
              f'({time.time() - t0:.0f} s now); KL {[round(v, 2) for v in f["kl"]]}, modes {f.get("modes")}', flush=True)


def summary(out):
    "One line per finished (protocol, precision, method): final KL/JSD mean ± sd over seeds, per-seed KL and modes, KL at T/2."
    print('| protocol | precision | method | KL | JSD | KL per seed | modes per seed | KL at T/2 | training s |')
    print('|---|---|---|---|---|---|---|---|---|')
    for name, precision, method in PLAN:
        path = Path(out)/f'{name}_{precision}'/f'{method}.json'
        if not path.exists(): continue
        m = json.loads(path.read_text()); f = m['final']
        half = m['settings']['train']['iterations']//2
        mid = next((e for e in m['evals'] if e.get('it') == half), None)
        print(f"| {name} | {precision} | {method} | {mean_sd(f['kl'])} | {mean_sd(f['jsd'])} | {[round(v, 1) for v in f['kl']]} | "
              f"{f.get('modes')} | {mean_sd(mid['kl']) if mid else '-'} | {m['train_seconds']:.0f} |")


def finished(out):
    "Every finished (protocol, precision, method) stack of the plan: {(name, precision, method): manifest}."
    found = {}
    for name, precision, method in PLAN:
        path = Path(out)/f'{name}_{precision}'/f'{method}.json'
        if path.exists(): found[(name, precision, method)] = json.loads(path.read_text())
    return found


def figure(out):
    "KL (log) and recovered modes against iterations (log), one column per method: each seed thin, the seed mean thick."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.ticker
    import matplotlib.pyplot as plt
    import numpy as np
    runs = finished(out)
    colours = dict(zip(PROTOCOLS, ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple')))
    fig, axs = plt.subplots(2, 2, figsize=(13, 7.5), sharex=True, height_ratios=(2, 1))
    for col, method in enumerate((S, AS)):
        for (name, precision, m), man in runs.items():
            if m != method: continue
            its = np.array([e['it'] for e in man['evals']])
            kl, modes = np.array([e['kl'] for e in man['evals']]), np.array([e['modes'] for e in man['evals']])
            style = dict(color=colours[name], ls='-' if precision == 'float32' else '--')
            axs[0, col].plot(its, kl, lw=0.6, alpha=0.45, **style)
            axs[0, col].plot(its, kl.mean(1), lw=2.2, label=f'{name} {precision} (mean of {kl.shape[1]} seeds)', **style)
            axs[1, col].plot(its, modes.mean(1), lw=2.2, **style)
            axs[1, col].plot(its, modes.min(1), lw=0.8, alpha=0.6, **style)
            ms = man['settings']['train']['milestones']
            for x in ms: axs[0, col].axvline(x, color=colours[name], lw=0.6, ls=':')
        axs[0, col].set(xscale='log', yscale='log', title=f'{method} at (0.3, 0.2, 0.9)', ylabel='toy KL (lower is better)')
        axs[0, col].legend(fontsize=8, loc='upper right')
        axs[1, col].set(xscale='log', xlabel='iteration (log axis)', ylabel='recovered modes\n(mean thick, worst seed thin)', ylim=(0, 8.5))
        ticks = [t for t in (100, 300, 1000, 3000, 10000, 30000, 60000)]
        axs[1, col].set_xticks(ticks, [f'{t:,}' for t in ticks]); axs[1, col].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axs[0, col].grid(alpha=0.3, which='both'); axs[1, col].grid(alpha=0.3)
    fig.suptitle('Toy convergence study, 8 Gaussians: dotted verticals are each protocol\'s learning-rate milestones; '
                 'solid float32, dashed bf16 hidden layers', fontsize=10)
    fig.tight_layout()
    fig.savefig(Path(out)/'study.png', dpi=110)
    print(Path(out)/'study.png')


if __name__ == '__main__':
    main()
