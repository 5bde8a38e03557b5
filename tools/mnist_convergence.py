"""The MNIST pilot of issue #15: how many epochs, at which width, until Soft-IntroVAE's test PSNR and classifier FD
stop improving on the full 60,000 training images, on this CPU (bf16 + channels-last where they pay)?

Each pilot is one `run_image_method` run (Soft-IntroVAE, seed 0) with the laptop profile's MNIST protocol and the
overrides below, evaluated every epoch, under --out/<pilot>/mnist/. With a constant learning rate and no schedule
that depends on the run length, the first E epochs of a long Soft-IntroVAE run are exactly a run of E epochs, so one
long run shows where a shorter protocol would stop. (AS-IntroVAE's annealing does depend on the length; the study of
the three methods is run at the chosen length.) A finished pilot is read back, an interrupted one resumes from its
checkpoint (at every epoch), so the study is resumed by running the same command again.

Usage: python tools/mnist_convergence.py [--out runs/mnist_convergence] [--data-root ../shared/data] [--threads 1]
       [--only NAME ...] [--list | --summary | --figure]
--summary prints per pilot the PSNR and classifier FD at every epoch and whether the curve has flattened by the rule
below; --figure draws both against epochs and against training time into --out/pilot.png.

The study it led to is the laptop profile's MNIST protocol (asintrovae.reproduce.IMAGE_PROFILES). Its runs are the
image notebooks' own, so they can be trained here ahead of `make reproduce`, in parallel processes, and are read back
by the notebooks:
  --study [--part K/N | --runs TAG:SEED ...] [--figures figures]  trains STUDY then EXTRA (every MNIST run the laptop
      notebooks ask for), seed by seed, the K-th of every N (K from 1) or the runs named, into
      <figures>/image_runs_laptop/mnist/;
  --study-summary  one row per study run (finished, diverged or in progress: read from its checkpoint) with the
      flattening rule, the methods' means, and their curves: <figures>/mnist_convergence_study/study.{md,png};
  --divergence-check [--check-iterations 300]  trains the first iterations of the study's protocol for the paper-kernel
      AS-IntroVAE under bf16/float32, the official tanh squash and the paper's lr 2e-4, beside the marginal kernel and
      Soft-IntroVAE, into <figures>/mnist_convergence_study/divergence_check.{json,md};
  --precision-check [--runs TAG:SEED ...]  trains Soft-IntroVAE under the precisions of PRECISION (default: bf16
      autocast, seed 0) beside the study's own runs; --precision-summary compares their scores and
      writes <figures>/mnist_convergence_study/precision_check.{json,md}.

Flattened (the rule): the mean test PSNR of the last FLAT_EPOCHS epochs is less than FLAT_PSNR dB above that of the
FLAT_EPOCHS epochs before, and their mean classifier FD less than FLAT_CFD below (means over epochs, because both
move by about their own size from one epoch to the next: PSNR by 0.1-0.6 dB, the classifier FD by 10-40 %).
"""
import argparse, json, re, time
from pathlib import Path

import torch

from asintrovae.reproduce import run_image_method

# name: overrides of the laptop profile's MNIST protocol (full training set, the official test split's first 1,000)
PILOTS = {
    'w4_e20': dict(n_train=None, width_scale=1/4, epochs=20),
    'w2_e10': dict(n_train=None, width_scale=1/2, epochs=10),
}
FLAT_EPOCHS, FLAT_PSNR, FLAT_CFD = 4, 0.25, 0.10

# The MNIST study of the laptop profile (issue #15): these three methods, 3 seeds; then the other MNIST runs the laptop
# notebooks ask for (Figure 9's IntroVAE, Table 2's WGAN-GP, Figure 2's fixed weights). Seed-major, so a part that is
# cut short leaves whole seeds.
STUDY = ('s-introvae', 'as-introvae', 'as-introvae-marginal')
EXTRA = ('introvae', 'wgan-gp', 'as-introvae-fixed', 'as-introvae-marginal-fixed')
# Soft-IntroVAE under each precision: tag -> (protocol overrides, label). The first is the study's own protocol
# (float32, since the check); the second bf16 autocast with float32 output layers; the third what the study trained
# before the check (bf16 output layers too).
PRECISION = {
    's-introvae': ({}, 'float32 (the protocol)'),
    's-introvae-bf16': (dict(amp=True), 'bf16 autocast, output layers float32'),
    's-introvae-bf16head': (dict(amp=True, float32_head=False), 'bf16 autocast, output layers bf16 too (the study before the check)'),
}


def study_runs(seeds=3):
    "The (tag, seed) of every laptop MNIST run, in the order they are trained."
    return [(t, s) for s in range(seeds) for t in STUDY] + [(t, s) for s in range(seeds) for t in EXTRA]


def parse_runs(names):
    "['introvae:0', ...] -> [('introvae', 0), ...], each a run of study_runs() (an error names the valid ones)."
    known, runs = study_runs() + [(t, s) for t in PRECISION for s in range(3)], []
    for name in names:
        tag, _, seed = name.rpartition(':')
        if not seed.isdigit() or (tag, int(seed)) not in known:
            raise SystemExit(f'--runs {name!r}: give TAG:SEED, one of ' + ', '.join(f'{t}:{s}' for t, s in known))
        runs.append((tag, int(seed)))
    return runs


def train_study(figures, part, data_root, runs=None):
    """Train (or read back) the K-th of every N study runs (`part` = 'K/N'), or the (tag, seed) pairs `runs`,
    into <figures>/image_runs_laptop."""
    from asintrovae.reproduce import IMAGE_VARIANTS, image_run_dir
    k, n = (int(v) for v in part.split('/'))
    for tag, seed in runs or study_runs()[k - 1::n]:
        method, options = IMAGE_VARIANTS.get(tag, (tag, None))
        t0 = time.time()
        print(f'{time.strftime("%H:%M:%S")} {tag} seed {seed}: start', flush=True)
        m = run_image_method(method, 'mnist', 'laptop', image_run_dir(figures, 'laptop'), seed, tag, options, data_root)
        print(f'{time.strftime("%H:%M:%S")} {tag} seed {seed}: {m["status"]}, {m["train_seconds"]:.0f} s training ({time.time() - t0:.0f} s now); '
              f'{ {k: round(v, 3) for k, v in m["final"].items() if isinstance(v, float)} }', flush=True)


def train_precision(figures, data_root, runs=None):
    "Train (or read back) Soft-IntroVAE runs (tag, seed) of PRECISION (default: bf16 autocast, seed 0) into <figures>/image_runs_laptop."
    from asintrovae.reproduce import image_run_dir
    for tag, seed in runs or [('s-introvae-bf16', 0)]:
        if tag not in PRECISION: raise SystemExit(f'--precision-check --runs: {tag!r} is not one of {", ".join(PRECISION)}')
        print(f'{time.strftime("%H:%M:%S")} {tag} seed {seed}: start', flush=True)
        m = run_image_method('s-introvae', 'mnist', 'laptop', image_run_dir(figures, 'laptop'), seed, tag, data_root=data_root,
                             protocol=PRECISION[tag][0])
        print(f'{time.strftime("%H:%M:%S")} {tag} seed {seed}: {m["status"]}, {m["train_seconds"]:.0f} s training; '
              f'precision: {m["precision"]["why"]}', flush=True)


def laptop_protocol(override=None):
    "The laptop MNIST protocol a run with `override` trains (run_protocol), as its manifest stores it (JSON types)."
    from asintrovae.reproduce import run_protocol
    return json.loads(json.dumps(run_protocol('laptop', 'mnist', override)))


def tail_mean(m, k, last=FLAT_EPOCHS):
    "The mean of evaluation `k` over a run's last `last` evaluations (the classifier FD moves by 10-40 % between epochs)."
    return sum(r[k] for r in m['evals'][-last:])/len(m['evals'][-last:])


def precision_summary(figures, last=FLAT_EPOCHS):
    """Soft-IntroVAE's scores under each precision of PRECISION (every finished seed): the final test PSNR, SSIM and
    classifier FD, and their means over the last `last` epochs (the classifier FD moves by 10-40 % from one epoch to the
    next); written to <figures>/mnist_convergence_study/precision_check.{json,md} and printed."""
    from asintrovae.reproduce import image_run_dir, mean_sd, write_json
    d = image_run_dir(figures, 'laptop')/'mnist'
    def read(tag, seed, override):              # a finished run of today's laptop protocol (older runs in the folder are not)
        m = read_run(d/f'{tag}_seed{seed}.json', laptop_protocol(override), want=laptop_protocol(override))
        return m if m and m['status'] == 'done' else None
    def tail(m, k): return tail_mean(m, k, last)
    found = {tag: {s: m for s in range(3) if (m := read(tag, s, override))} for tag, (override, _) in PRECISION.items()}
    result = {tag: dict(label=PRECISION[tag][1], seeds=sorted(runs), train_seconds=[runs[s]['train_seconds'] for s in sorted(runs)],
                        **{f'{k}{suffix}': [f(runs[s], k) for s in sorted(runs)] for k in ('psnr', 'ssim', 'cfd')
                           for suffix, f in (('', lambda m, k: m['final'][k]), (f'_last{last}', tail))})
              for tag, runs in found.items() if runs}
    tags = list(result)
    lines = ['| metric | ' + ' | '.join(f"{result[t]['label']} (seeds {', '.join(map(str, result[t]['seeds']))})" for t in tags) + ' |',
             '|---|' + '---|'*len(tags)]
    for k, digits, name in (('psnr', 2, 'test PSNR (dB), final'), (f'psnr_last{last}', 2, f'test PSNR, mean of the last {last} epochs'),
                            ('ssim', 4, 'SSIM, final'), ('cfd', 0, 'classifier FD, final'),
                            (f'cfd_last{last}', 0, f'classifier FD, mean of the last {last} epochs'), ('train_seconds', 0, 'training seconds')):
        lines.append(f'| {name} | ' + ' | '.join(mean_sd(result[t][k], digits, per_seed=True) for t in tags) + ' |')
    layouts = sorted({m['precision']['why'] for runs in found.values() for m in runs.values()})
    text = '\n'.join(lines) + ('\n\nmean ± sd over seeds (per seed in brackets); MNIST laptop protocol (60,000 images, 12 epochs, '
                               'width 1/4, lr 1e-3), 1-thread processes on a 2-core x86_64 CPU (AVX-512 BF16), two at a time. '
                               'The trainers\' own records of precision and layout: ' + ' | '.join(layouts) + '.\n')
    out = Path(figures)/'mnist_convergence_study'
    write_json(out/'precision_check.json', result); (out/'precision_check.md').write_text(text)
    print(text)


# Table 3's MNIST row in the paper (the authors' slides, ../shared/paper): test PSNR of one run at full width, 100 epochs.
PAPER_PSNR = {'s-introvae': 20.282, 'as-introvae': 21.014}
COLORS = {'s-introvae': 'tab:blue', 'as-introvae': 'tab:green', 'as-introvae-marginal': 'tab:purple'}


def study_manifests(figures, seeds=3):
    "{(tag, seed): manifest} of the study's runs under today's laptop protocol, finished, diverged or in progress (read_run)."
    from asintrovae.reproduce import image_run_dir
    d, P = image_run_dir(figures, 'laptop')/'mnist', laptop_protocol()
    found = {(t, s): read_run(d/f'{t}_seed{s}.json', P, want=P) for t in STUDY for s in range(seeds)}
    return {k: m for k, m in found.items() if m}


def diverged_at(m):
    """The first iteration with a NaN/inf loss of a diverged run, else None: the manifest's `diverged_at`, or, in a
    manifest written before it stored one (the paper kernel's seeds 0 and 1), the trainer's message, which names it."""
    if m['status'] != 'diverged': return None
    if 'diverged_at' in m: return m['diverged_at']
    at = re.search(r'NaN/inf at iteration (\d+)', m.get('error', ''))
    return int(at[1]) if at else None


def study_summary(figures):
    """The study's runs, one row each: status, final scores, the flattening rule at its last epoch, training time; the
    methods' means over finished seeds; their curves against epochs -> <figures>/mnist_convergence_study/study.{md,png}."""
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from asintrovae.reproduce import mean_sd, tally
    runs, out = study_manifests(figures), Path(figures)/'mnist_convergence_study'
    lines = ['| method | seed | status | epochs | test PSNR (dB) | SSIM | classifier FD | PSNR, last 4 epochs against the 4 before | '
             'classifier FD, same | flattened | training s |', '|---|---|---|---|---|---|---|---|---|---|---|']
    for (tag, seed), m in runs.items():
        if m['status'] == 'diverged':
            lines.append(f"| {tag} | {seed} | diverged at iteration {diverged_at(m)} | - | - | - | - | - | - | - | {m['train_seconds']:.0f} |")
            continue
        ev = m['evals']; last = ev[-1] if ev else {}
        flat, gain, drop = flattened(ev)
        lines.append(f"| {tag} | {seed} | {m['status']} | {last.get('epoch', 0):g} | {last.get('psnr', float('nan')):.2f} | "
                     f"{last.get('ssim', float('nan')):.4f} | {last.get('cfd', float('nan')):.0f} | {'-' if gain != gain else f'{gain:+.2f} dB'} | {'-' if drop != drop else f'{-drop:+.0%}'} | "
                     f"{'yes' if flat else 'no' if gain == gain else f'- (before epoch {2*FLAT_EPOCHS})'} | {m['train_seconds']:.0f} |")
    lines += ['', '| method | finished seeds | test PSNR (dB) | classifier FD | classifier FD, mean of the last 4 epochs | paper PSNR |',
              '|---|---|---|---|---|---|']
    for tag in STUDY:
        done = [m for (t, _), m in runs.items() if t == tag and m['status'] == 'done']
        lines.append(f"| {tag} | {len(done)} | {mean_sd([m['final']['psnr'] for m in done], 2, per_seed=True)} | "
                     f"{mean_sd([m['final']['cfd'] for m in done], 0, per_seed=True)} | "
                     f"{mean_sd([tail_mean(m, 'cfd') for m in done], 0, per_seed=True)} | "
                     f"{PAPER_PSNR.get(tag, '-')} |")
    lines += ['', f'Written by `python tools/mnist_convergence.py --study-summary` from the runs in `image_runs_laptop/mnist/` trained '
              'under the laptop protocol (60,000 images, 12 epochs of batch 64, width 1/4, lr 1e-3, float32 with channels-last); '
              'a run still training is read from its checkpoint. Scores of the last evaluation (1,000 test images for PSNR and '
              'SSIM, 1,000 samples from fixed noise for the classifier FD); flattened: the last 4 epochs\' mean PSNR less than '
              f'{FLAT_PSNR} dB above the 4 before and their mean classifier FD less than {FLAT_CFD:.0%} below. The paper\'s PSNR: one '
              'run at full width, 100 epochs, lr 2e-4. Hardware: ' + tally([m['hardware'] for m in runs.values() if 'hardware' in m])
              + '; 1-thread processes, two to four at a time (the last epochs of Soft-IntroVAE seed 2 and of the marginal kernel\'s '
              'seed 1 with 2 threads, resumed from their checkpoints; `training s` is wall-clock under that sharing).']
    (out/'study.md').write_text('\n'.join(lines) + '\n')
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.8))
    for (tag, seed), m in runs.items():
        ep = [e['epoch'] for e in m['evals']]
        for ax, k in zip(axs, ('psnr', 'cfd')):
            ax.plot(ep, [e[k] for e in m['evals']], 'o-', ms=2.5, lw=1, color=COLORS[tag], label=tag if seed == min(s for t, s in runs if t == tag) else None)
            if m['status'] == 'diverged' and ep: ax.plot((diverged_at(m) or 0)/m['per_epoch'], m['evals'][-1][k], 'x', ms=9, color=COLORS[tag])
    for tag, v in PAPER_PSNR.items(): axs[0].axhline(v, ls=':', lw=1, color=COLORS[tag])
    axs[0].set(xlabel='epoch', ylabel='test PSNR (dB); dotted: the paper', ylim=(5, 22))
    axs[1].set(xlabel='epoch', ylabel='classifier FD (lower is better)', yscale='log')
    axs[0].legend(fontsize=8)
    fig.suptitle('MNIST study, laptop protocol (float32, width 1/4, 60,000 images): one line per seed, x where a run diverged (at its last score)', fontsize=10)
    plt.tight_layout(); fig.savefig(out/'study.png', dpi=130)
    print('\n'.join(lines)); print(out/'study.png')


# Why the paper-kernel AS-IntroVAE diverges in the study (issue #15): the study's first iterations under each setting,
# from the same seed, in the study's layout (channels-last). name: (method, loss options, lr, bf16 autocast, output
# layers float32). The study runs float32 (the first row); the bf16 rows are what it ran before the precision check.
DIVERGENCE_CASES = {
    'paper kernel, float32, lr 1e-3 (the study)':       ('as-introvae', {}, 1e-3, False, True),
    'paper kernel, bf16, lr 1e-3':                      ('as-introvae', {}, 1e-3, True, True),
    'paper kernel, bf16 with bf16 output layers, lr 1e-3 (the study before the precision check)': ('as-introvae', {}, 1e-3, True, False),
    'paper kernel + tanh squash (official), float32, lr 1e-3': ('as-introvae', {'squash': True}, 1e-3, False, True),
    'paper kernel, float32, lr 2e-4 (the paper\'s)':     ('as-introvae', {}, 2e-4, False, True),
    'marginal kernel, float32, lr 1e-3 (the study)':    ('as-introvae', {'kernel': 'marginal'}, 1e-3, False, True),
    'Soft-IntroVAE, float32, lr 1e-3 (the study)':      ('s-introvae', {}, 1e-3, False, True),
}


def divergence_check(figures, data_root, iterations=300, seed=0):
    """Train each DIVERGENCE_CASES setting for `iterations` of the study's MNIST protocol (its model, batches, seed and
    c schedule, which depends on the study's length) -> {case: what happened}; written to
    <figures>/mnist_convergence_study/divergence_check.{json,md}."""
    from asintrovae.losses import Betas, make_loss
    from asintrovae.reproduce import IMAGE_SETS, hardware, image_model, image_protocol, load_image_set, write_json
    from asintrovae.data import TensorBatches
    from asintrovae.train import NonFiniteLossError, Trainer, TrainConfig
    P, spec = image_protocol('laptop', 'mnist'), IMAGE_SETS['mnist']
    train, _, _ = load_image_set('mnist', data_root, P['n_train'], P['n_test'])
    study_iterations = len(train)//P['batch_size']*P['epochs']
    out = {}
    for name, (method, options, lr, amp, float32_head) in DIVERGENCE_CASES.items():
        torch.manual_seed(seed)
        model = image_model(method, 'mnist', P['width_scale'], float32_head)
        loss = make_loss(method, Betas(*spec.betas), study_iterations, **options)
        cfg = TrainConfig(iterations=iterations, warmup=0, milestones=(), lr_e=lr, lr_d=lr, log_every=10, seed=seed, progress=False,
                          amp=amp, channels_last=True)
        trainer = Trainer(model, loss, TensorBatches(train, P['batch_size'], seed=seed), cfg)
        t0, bad = time.time(), None
        try: trainer.fit()
        except NonFiniteLossError as e: bad = e.iteration
        logs = trainer.history['logs']
        def peak(k): return max((r[k][0] for r in logs if k in r), default=None)
        last = logs[-1] if logs else {}
        out[name] = dict(method=method, loss_options=options, lr=lr, bf16=amp, float32_head=float32_head, iterations=iterations, nan_at=bad,
                         finite_through=logs[-1]['it'] if logs else 0, peak_D=peak('dec_as_distance'), peak_loss_d=peak('loss_d'),
                         peak_kl_fake=peak('kl_fake'), last_rec=last.get('rec', [None])[0], last_c=last.get('as_c', [None])[0],
                         seconds=round(time.time() - t0, 1))
        print(name, out[name], flush=True)
    d = Path(figures)/'mnist_convergence_study'; d.mkdir(parents=True, exist_ok=True)
    write_json(d/'divergence_check.json', dict(cases=out, protocol=P, study_iterations=study_iterations, seed=seed, hardware=hardware(),
                                               finished=time.strftime('%Y-%m-%d %H:%M:%S')))
    divergence_table(d)
    return out


def divergence_table(d):
    "Write <d>/divergence_check.md from <d>/divergence_check.json (see divergence_check)."
    r = json.loads((Path(d)/'divergence_check.json').read_text())
    P, out = r['protocol'], r['cases']
    iterations = next(iter(out.values()))['iterations']
    f = lambda v: '-' if v is None else f'{v:.3g}'
    lines = ['# Why the paper-kernel AS-IntroVAE diverges in the MNIST study', '',
             f'Written by `python tools/mnist_convergence.py --divergence-check`: the first {iterations} iterations of the laptop MNIST '
             f'protocol (60,000 images, batch {P["batch_size"]}, width x{P["width_scale"]}, seed {r["seed"]}; the c schedule of the '
             f'study\'s {r["study_iterations"]:,} iterations) under each setting, in the study\'s channels-last layout. Logs are means over 10 iterations, and the peaks are '
             'over the logged rows before a NaN (a run that blows up between two rows shows no peak); D is the decoder step\'s AS '
             f'distance, rec the reconstruction error of the last row. Hardware: {r["hardware"]}.', '',
             '| setting | NaN at iteration | finite through | peak D | peak decoder loss | peak KL of the fakes | rec at the end | c at the end |',
             '|---|---|---|---|---|---|---|---|']
    for name, c in out.items():
        lines.append(f"| {name} | {c['nan_at'] if c['nan_at'] is not None else 'none'} | {c['finite_through']} | {f(c['peak_D'])} | "
                     f"{f(c['peak_loss_d'])} | {f(c['peak_kl_fake'])} | {f(c['last_rec'])} | {f(c['last_c'])} |")
    (Path(d)/'divergence_check.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--out', default='runs/mnist_convergence')
    p.add_argument('--data-root', default=None)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--only', nargs='*', help='pilot names to run (default: all)')
    p.add_argument('--list', action='store_true')
    p.add_argument('--summary', action='store_true')
    p.add_argument('--figure', action='store_true')
    p.add_argument('--figures', default='figures', help='the figures folder whose image_runs_laptop the study trains into')
    p.add_argument('--study', action='store_true')
    p.add_argument('--part', default='1/1')
    p.add_argument('--runs', nargs='*', help='with --study: these runs (TAG:SEED, e.g. introvae:0) instead of a part')
    p.add_argument('--precision-check', action='store_true')
    p.add_argument('--precision-summary', action='store_true')
    p.add_argument('--study-summary', action='store_true')
    p.add_argument('--divergence-check', action='store_true')
    p.add_argument('--check-iterations', type=int, default=300)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.summary: return summary(a.out)
    if a.figure: return figure(a.out)
    if a.study: return train_study(a.figures, a.part, a.data_root, parse_runs(a.runs or []))
    if a.precision_check: return train_precision(a.figures, a.data_root, parse_runs(a.runs or []))
    if a.precision_summary: return precision_summary(a.figures)
    if a.study_summary: return study_summary(a.figures)
    if a.divergence_check: return divergence_check(a.figures, a.data_root, a.check_iterations)
    for name, protocol in PILOTS.items():
        if a.only and name not in a.only: continue
        manifest = Path(a.out)/name/'mnist'/'s-introvae_seed0.json'
        if a.list: print(manifest, manifest.exists()); continue
        t0 = time.time()
        print(f'{time.strftime("%H:%M:%S")} {name}: start {protocol}', flush=True)
        m = run_image_method('s-introvae', 'mnist', 'laptop', Path(a.out)/name, seed=0, data_root=a.data_root, protocol=protocol)
        f = m['final']
        print(f'{time.strftime("%H:%M:%S")} {name}: {m["status"]}, {m["train_seconds"]:.0f} s training ({time.time() - t0:.0f} s now); '
              f'PSNR {f.get("psnr", float("nan")):.2f} dB, classifier FD {f.get("cfd", float("nan")):.1f}', flush=True)


def read_run(path, protocol, want=None):
    """The run whose manifest is `path` -> its manifest if finished or diverged (and, given `want`, trained under that
    protocol: `run_identity`), else its evaluations so far from the checkpoint beside it (status 'in progress', settings
    with `protocol`) while it trains, else None. So a curve can be looked at while it trains."""
    from asintrovae.reproduce import run_identity
    path = Path(path)
    if path.exists():
        m = json.loads(path.read_text())
        if want is None or run_identity(m['settings'])['protocol'] == run_identity({'protocol': want})['protocol']: return m
    ckpt = path.with_suffix('.pt')
    if not ckpt.exists(): return None
    st = torch.load(ckpt, map_location='cpu', weights_only=False)
    return dict(status=f"in progress (iteration {st['it']:,} of {st['config']['iterations']:,})", evals=st['history']['evals'],
                train_seconds=st['train_seconds'], precision=st['precision'], settings=dict(protocol=protocol))


def pilots(out):
    "The pilots finished, diverged or in progress -> {name: manifest} (read_run)."
    from asintrovae.reproduce import image_protocol
    found = {name: read_run(Path(out)/name/'mnist'/'s-introvae_seed0.json', {**image_protocol('laptop', 'mnist'), **protocol})
             for name, protocol in PILOTS.items()}
    return {name: m for name, m in found.items() if m}


def flattened(evals, upto=None):
    """(flat, PSNR gain, relative classifier-FD drop): the mean of the last FLAT_EPOCHS evaluations (up to epoch `upto`,
    default all) against the mean of the FLAT_EPOCHS before them."""
    ev = [e for e in evals if upto is None or e['epoch'] <= upto]
    if len(ev) < 2*FLAT_EPOCHS + 1: return False, float('nan'), float('nan')
    mean = lambda rows, k: sum(r[k] for r in rows)/len(rows)
    a, b = ev[-2*FLAT_EPOCHS:-FLAT_EPOCHS], ev[-FLAT_EPOCHS:]
    gain, drop = mean(b, 'psnr') - mean(a, 'psnr'), (mean(a, 'cfd') - mean(b, 'cfd'))/mean(a, 'cfd')
    return gain < FLAT_PSNR and drop < FLAT_CFD, gain, drop


def summary(out):
    for name, m in pilots(out).items():
        P = m['settings']['protocol']
        epochs = max(m['evals'][-1]['epoch'], 1)
        print(f"### {name}: width x{P['width_scale']:g}, {P['epochs']} epochs of batch {P['batch_size']} on {m.get('n_train') or 'all the'} training images, "
              f"lr {P['lr']:g}; {m['status']}; {m['train_seconds']:.0f} s training ({m['train_seconds']/epochs:.0f} s per epoch); "
              f"precision: {m['precision']['why']}")
        print(f'flattened (the mean of the last {FLAT_EPOCHS} epochs against the {FLAT_EPOCHS} before: PSNR less than +{FLAT_PSNR} dB, '
              f'classifier FD less than -{FLAT_CFD:.0%}), had the run stopped at epoch')
        for upto in range(2*FLAT_EPOCHS, int(m['evals'][-1]['epoch']) + 1):
            flat, gain, drop = flattened(m['evals'], upto)
            print(f'- {upto}: {flat} (PSNR {gain:+.2f} dB, classifier FD {-drop:+.1%})')
        print()
        print('| epoch | test PSNR (dB) | SSIM | classifier FD | training s |')
        print('|---|---|---|---|---|')
        for e in m['evals']:
            print(f"| {e['epoch']:g} | {e['psnr']:.2f} | {e['ssim']:.4f} | {e['cfd']:.1f} | {e['seconds']:.0f} |")
        print()


def figure(out):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    runs = pilots(out)
    fig, axs = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, m in runs.items():
        ep = [e['epoch'] for e in m['evals']]
        axs[0].plot(ep, [e['psnr'] for e in m['evals']], 'o-', ms=3, label=name)
        axs[1].plot(ep, [e['cfd'] for e in m['evals']], 'o-', ms=3, label=name)
        axs[2].plot([e['seconds'] for e in m['evals']], [e['psnr'] for e in m['evals']], 'o-', ms=3, label=name)
    axs[0].axhline(20.282, ls=':', color='k', lw=1, label="paper (full width, 100 epochs)")
    axs[2].axhline(20.282, ls=':', color='k', lw=1)
    axs[0].set(xlabel='epoch', ylabel='test PSNR (dB)'); axs[1].set(xlabel='epoch', ylabel='classifier FD', yscale='log')
    axs[2].set(xlabel='training seconds (one core)', ylabel='test PSNR (dB)')
    axs[0].legend(fontsize=8)
    fig.suptitle('MNIST pilot: Soft-IntroVAE on 60,000 images, seed 0, evaluated every epoch', fontsize=10)
    plt.tight_layout()
    fig.savefig(Path(out)/'pilot.png', dpi=130)
    print(Path(out)/'pilot.png')


if __name__ == '__main__':
    main()
