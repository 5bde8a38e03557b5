"""`partial=True`: the toy notebooks tabulate a profile that is still being trained, from the runs finished so far.

Each test trains a tiny profile (smoke, 60 iterations, one run per configuration and seed), removes some finished
runs as if they had not been trained yet, and runs the notebook again with `partial=True`: it must train nothing,
count what is missing, and leave it out of the tables instead of failing or treating it as a result."""
import json
from pathlib import Path

import papermill as pm

NBS = Path(__file__).resolve().parents[1]/'nbs'/'experiments'


def execute(notebook, tmp_path, name, **params):
    "Run an experiment notebook with papermill into tmp_path; its figures and runs go to tmp_path/'figures'."
    pm.execute_notebook(str(NBS/notebook), str(tmp_path/f'{name}.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(tmp_path),
                        parameters=dict(profile='smoke', out_dir=str(tmp_path/'figures'), iterations=60, stack_by='seed', **params))


def forget(run_dir, name):
    "Remove a finished run's manifest, samples and checkpoint: as if it had not been trained yet."
    files = [p for p in run_dir.glob(f'{name}*') if p.name.startswith((f'{name}.', f'{name}_samples', f'{name}-'))]
    assert any(p.suffix == '.json' for p in files), f'no finished run {name} in {run_dir}'
    for p in files: p.unlink()


def test_toy_2d_partial_tabulates_the_finished_runs(tmp_path):
    execute('toy_2d.ipynb', tmp_path, 'full', methods=['s-introvae', 'as-introvae'])
    figs = tmp_path/'figures'
    full = (figs/'table1_8gaussians_smoke.md').read_text()
    assert 'partial' not in full.lower()
    forget(figs/'toy_2d_8gaussians_smoke', 'as-introvae_C1_seed0')
    execute('toy_2d.ipynb', tmp_path, 'partial', methods=['s-introvae', 'as-introvae'], partial=True)
    table = (figs/'table1_8gaussians_smoke.md').read_text()
    assert 'partial, 3 of its 4 runs finished' in table, table
    rows = [line for line in table.splitlines() if line.startswith('| as-introvae |')]
    assert rows and not any('| C1 |' in r for r in rows), rows                       # the configuration not trained is left out
    assert not (figs/'toy_2d_8gaussians_smoke'/'as-introvae_C1_seed0.json').exists()   # and it was not trained
    manifest = json.loads((figs/'toy_2d_8gaussians_smoke.json').read_text())
    assert manifest['partial'] and (manifest['runs_done'], manifest['runs_asked']) == (3, 4)


def test_toy_robustness_partial_leaves_incomplete_cells_out(tmp_path):
    execute('toy_robustness.ipynb', tmp_path, 'full', set_methods=['vae', 's-introvae'])
    figs = tmp_path/'figures'
    forget(figs/'toy_robustness_8gaussians_smoke', 'as-introvae_kl0.7_rec0.2_neg2_seed0')
    forget(figs/'toy_2d_rings_smoke', 'vae_C1_seed0')
    execute('toy_robustness.ipynb', tmp_path, 'partial', set_methods=['vae', 's-introvae'], partial=True)
    manifest = json.loads((figs/'toy_robustness_8gaussians_smoke.json').read_text())
    assert manifest['partial'] and manifest['cells_complete'] == {'s-introvae': 4, 'as-introvae': 3}
    assert manifest['share']['as-introvae']['cells'] == 3
    assert sum(v is None or v != v for row in manifest['as_minus_s']['as-introvae'] for v in row) == 1   # NaN: the cell left out
    grid = (figs/'robustness_8gaussians_smoke.md').read_text()
    assert '| as-introvae | 3 of 4 | 1 |' in grid and '| s-introvae | 4 of 4 | 1 |' in grid, grid
    rings = (figs/'robustness_rings_smoke.md').read_text()
    vae_c1 = next(line for line in rings.splitlines() if line.startswith('| vae | C1 |'))
    assert vae_c1.endswith('| - | - | - | 0/0 | 0 of 1 |'), vae_c1
    assert not (figs/'toy_2d_rings_smoke'/'vae_C1_seed0.json').exists()
