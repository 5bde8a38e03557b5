"""Is the official kernel's divergence on the toys ours, or what LOUEY233/AS-IntroVAE's distance would do?

Table 1's `as-introvae-official` row changes one thing against the paper's AS-IntroVAE: the kernel is the official
code's per-dimension sum, exp(-diff^2 / (2 s)) / sqrt(s) with s = var_i + var_j, summed over latent dimensions. The
official code also squashes mu and logvar by tanh before its distance (a separate option, `squash`, off in that row).

This replays a diverged run from its last checkpoint with the trainer's own step, up to the iteration where its loss
became NaN/inf, and at every iteration computes, on the posteriors the AS term sees (re-encoded reals, fakes):
  - our D (`as_distance_logvar`, kernel='official', the paper's mean over pairs) and the official code's
    `Gaussian_Distance` restated below in plain lines (its 'mean' averages over pairs *and* dimensions, its 'none'
    sums over both, so ours = d x theirs('mean'), and ours with reduction='sum' = theirs('none'));
  - the smallest posterior variance, the kernel's largest diagonal term 1 / sqrt(2 var);
  - the same distance after the official code's tanh (var >= exp(-1), so every term is at most 1/sqrt(2/e) ~ 1.17);
  - the trainer's own logged losses of each step (the encoder's and the decoder's, largest over members).
Writes one JSON (a summary per run and the first run's rows) and the first run's figure (--out).

  .venv/bin/python tools/official_kernel_check.py figures/toy_2d_8gaussians_laptop/as-introvae-official_C1_seed3.json ...
  [--add]   keep the runs already checked in --out (their checkpoints may be gone: they stay out of git) and add these
"""
import argparse, json, math, shutil, sys, tempfile
from pathlib import Path

import torch

from asintrovae.kernel import as_distance_logvar
from asintrovae.losses import encode
from asintrovae.reproduce import hardware, toy_loss, toy_run_key, toy_trainer, write_json
from asintrovae.train import TrainConfig, config_with_defaults


def official_gaussian_distance(mu_a, logvar_a, mu_b, logvar_b, reduce='mean'):
    "LOUEY233/AS-IntroVAE utils.Gaussian_Distance restated: [n, d] x [n, d] -> []; 'mean' over pairs and dims, else their sum."
    def k(m1, v1, m2, v2):             # every pair (i, j) and dimension: exp(-(m1 - m2)^2 / (2 (v1 + v2))) / sqrt(v1 + v2)
        t = torch.exp(-0.5*(m1[:, None] - m2[None]).pow(2)/(v1[:, None] + v2[None]))/torch.sqrt(v1[:, None] + v2[None])
        return t.mean() if reduce == 'mean' else t.sum()
    va, vb = logvar_a.exp(), logvar_b.exp()
    return k(mu_a, va, mu_a, va) + k(mu_b, vb, mu_b, vb) - 2*k(mu_a, va, mu_b, vb)


def rebuild(manifest, checkpoint):
    "The run's trainer, loaded from `checkpoint` (a copy: replaying never touches the run's own file)."
    s = manifest['settings']
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config_with_defaults(s['train']).items()})
    loss = toy_loss(s['method'], s['members'], cfg, {k: v for k, v in s['loss'].items() if k != 'kernel'})   # the row names its kernel
    trainer = toy_trainer(s['dataset'], len(s['members']), cfg, s['batch_size'], loss, checkpoint, hidden=s['hidden'],
                          layers=s['layers'], precision=s['precision'])
    trainer.load()
    return trainer


@torch.no_grad()
def distances(model, x, noise):
    "D on the posteriors the AS term compares (re-encoded reals vs fakes), ours and the official code's, member 0."
    mu_r, lv_r = (t[0].double() for t in encode(model, x))
    mu_f, lv_f = (t[0].double() for t in encode(model, model.decode(noise)))
    d = mu_r.shape[-1]
    ours = as_distance_logvar(mu_r, lv_r, mu_f, lv_f, kernel='official').item()
    ours_sum = as_distance_logvar(mu_r, lv_r, mu_f, lv_f, kernel='official', reduction='sum').item()
    theirs = official_gaussian_distance(mu_r, lv_r, mu_f, lv_f, 'mean').item()
    theirs_sum = official_gaussian_distance(mu_r, lv_r, mu_f, lv_f, 'none').item()
    sq = [t.tanh() for t in (mu_r, lv_r, mu_f, lv_f)]
    min_logvar = min(lv_r.min().item(), lv_f.min().item())
    return dict(ours=ours, theirs_times_d=d*theirs, ours_sum=ours_sum, theirs_sum=theirs_sum,
                tanh_theirs_times_d=d*official_gaussian_distance(*sq, 'mean').item(),
                min_var_real=lv_r.exp().min().item(), min_var_fake=lv_f.exp().min().item(),
                max_diagonal=d*(2*math.exp(min_logvar))**-0.5)


def replay(manifest_path):
    "Replay one diverged run from its last checkpoint to its NaN -> the result (with a row per iteration)."
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    if manifest.get('status') != 'diverged': sys.exit(f'{manifest_path} did not diverge (status {manifest.get("status")!r})')
    if len(manifest['settings']['members']) != 1:
        sys.exit(f'{manifest_path} is a stack of {len(manifest["settings"]["members"])} members: the check replays one-run stacks (stack_by="seed")')
    ckpt = manifest_path.with_name(f"{manifest['name']}-{toy_run_key(manifest['settings'])}.pt")
    if not ckpt.exists(): sys.exit(f'{ckpt} is missing: the check replays the run from its last checkpoint (checkpoints stay out of git)')
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)/ckpt.name; shutil.copy(ckpt, copy)
        trainer = rebuild(manifest, copy)
    start, bad = trainer.it, manifest['diverged_at']
    rows = []
    for it in range(start, bad + 1):                 # the trainer's loop body (Trainer.fit), one iteration at a time
        x = trainer.batches.next()
        noise = torch.randn(*x.shape[:2], trainer.model.z_dim)
        rows.append(dict(it=it, c=trainer.loss.c(it), **distances(trainer.model, x, noise)))
        logs = trainer.train_step(x, noise, it)
        trainer.sched_e.step(); trainer.sched_d.step(); trainer.it = it + 1
        rows[-1].update({k: logs[k].float().max().item() for k in ('loss_e', 'loss_d', 'as_distance', 'dec_as_distance') if k in logs})
        rows[-1]['loss_finite'] = math.isfinite(rows[-1]['loss_e']) and math.isfinite(rows[-1].get('loss_d', 0.0))
        if not rows[-1]['loss_finite']: break
    finite = [r for r in rows if math.isfinite(r['ours']) and math.isfinite(r['theirs_times_d'])]
    rel = lambda a, b: max(abs(r[a] - r[b])/max(abs(r[b]), 1e-300) for r in finite)
    min_var = lambda r: min(r['min_var_real'], r['min_var_fake'])
    result = dict(run=manifest['name'], checkpoint_it=start, diverged_at=bad,
                  replay_diverged_at=None if rows[-1]['loss_finite'] else rows[-1]['it'], c_at_nan=rows[-1]['c'],
                  max_rel_diff_mean=rel('ours', 'theirs_times_d'), max_rel_diff_sum=rel('ours_sum', 'theirs_sum'),
                  d_start=rows[0]['ours'], d_last_finite=finite[-1]['ours'], min_var_start=min_var(rows[0]),
                  min_var_last_finite=min_var(finite[-1]), max_d_tanh=max(r['tanh_theirs_times_d'] for r in finite),
                  max_d=max(r['ours'] for r in finite), max_loss_d=max(r.get('loss_d', -math.inf) for r in rows[:-1]),
                  tanh_bound=2*2*(2*math.exp(-1))**-0.5, rows=rows)   # d = 2; two same-batch terms, each <= 1/sqrt(2/e)
    print(f"{result['run']}: replayed {start}..{rows[-1]['it']} (manifest: NaN at {bad}, replay: {result['replay_diverged_at']}); "
          f"ours vs the official Gaussian_Distance: max rel. diff {result['max_rel_diff_mean']:.1e} (mean), {result['max_rel_diff_sum']:.1e} (sum); "
          f"D {result['d_start']:.3g} -> {result['d_last_finite']:.3g} (max {result['max_d']:.3g}; decoder loss max {result['max_loss_d']:.3g}); smallest variance {result['min_var_start']:.1e} -> "
          f"{result['min_var_last_finite']:.1e}; after tanh D <= {result['max_d_tanh']:.3g}", flush=True)
    return result


def round4(v):
    "A float to 4 significant digits (the figure's rows); anything else as it is."
    return float(f'{v:.4g}') if isinstance(v, float) and math.isfinite(v) else v


def main(manifests, out, add=False):
    """Replay every run; write one JSON (a summary per run, the first run's rows) and the first run's figure.
    `add`: keep the runs already in `out` (checked earlier, perhaps on a machine that still had their checkpoints), its
    example and figure; the runs replayed now are added, or replace their earlier summary."""
    results = [replay(m) for m in manifests]
    out = Path(out)
    earlier = json.loads(out.read_text()) if add and out.exists() else None
    if earlier and earlier['hardware'] != hardware():     # one hardware line must describe every run in the file
        sys.exit(f"{out} was checked on {earlier['hardware']!r}, this machine is {hardware()!r}: write a new --out instead of --add")
    runs = [{k: v for k, v in r.items() if k != 'rows'} for r in results]
    if earlier:
        replayed = {r['run'] for r in runs}
        runs = [r for r in earlier['runs'] if r['run'] not in replayed] + runs
        example = earlier['example']
    else:
        example = dict(run=results[0]['run'], rows=[{k: round4(v) for k, v in r.items()} for r in results[0]['rows']])
        plot(results[0], out.with_suffix('.png'))
    write_json(out, dict(hardware=hardware(), runs=sorted(runs, key=lambda r: r['run']), example=example))
    print(f'-> {out} ({len(runs)} runs)' + ('' if earlier else f', {out.with_suffix(".png")}'))


def plot(result, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [r for r in result['rows'] if math.isfinite(r['ours'])]
    it = [r['it'] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].semilogy(it, [r['ours'] for r in rows], label='ours (kernel=official)', lw=2)
    ax[0].semilogy(it, [r['theirs_times_d'] for r in rows], '--', label="official Gaussian_Distance x d", lw=1.2)
    ax[0].semilogy(it, [max(r['tanh_theirs_times_d'], 1e-12) for r in rows], label='same, after the official tanh', lw=1.2)
    ax[0].set(xlabel='iteration', ylabel='D (real vs fake posteriors)', title=f"{result['run']}: D until the NaN")
    ax[0].legend(fontsize=8)
    ax[1].semilogy(it, [r['min_var_real'] for r in rows], label='reals')
    ax[1].semilogy(it, [r['min_var_fake'] for r in rows], label='fakes')
    ax[1].axhline(math.exp(-1), color='gray', ls=':', label='tanh floor exp(-1)')
    ax[1].set(xlabel='iteration', ylabel='smallest posterior variance', title='variance collapse')
    ax[1].legend(fontsize=8)
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('manifests', nargs='+', help="diverged runs' manifests; their checkpoints must lie beside them")
    p.add_argument('--out', default='figures/toy_2d_8gaussians_laptop/official_kernel_check.json')
    p.add_argument('--add', action='store_true', help='keep the runs already in --out, its example and figure; add these')
    a = p.parse_args()
    main(a.manifests, a.out, a.add)
