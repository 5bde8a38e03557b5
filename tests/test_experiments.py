"""Every experiment notebook under nbs/experiments runs through the papermill driver at its smoke profile."""
import os
from pathlib import Path

import pytest

from asintrovae.reproduce import EXPERIMENTS, run_experiment

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'/'data'                # the real data beside the checkout, as in CI
DATA = str(SHARED) if SHARED.exists() else None
PROFILED = [name for name, e in EXPERIMENTS.items() if e.takes_profile]


def test_every_experiment_notebook_is_registered():
    on_disk = {p.relative_to(ROOT/'nbs').as_posix() for p in (ROOT/'nbs'/'experiments').glob('*.ipynb')}
    registered = {e.notebook for e in EXPERIMENTS.values()}
    assert on_disk <= registered, f'experiment notebooks the driver does not know: {on_disk - registered}'


@pytest.mark.parametrize('name', PROFILED)
def test_experiment_runs_at_smoke_profile(name, tmp_path):
    m = run_experiment(name, profile='smoke', out=tmp_path/'runs', fig_dir=tmp_path/'figures', data_root=DATA)
    assert m['status'] == 'ok', f"{name} failed at the smoke profile: {m.get('error')} (executed notebook in {tmp_path/'runs'})"
    assert any(p.suffix == '.png' for p in (tmp_path/'figures').iterdir()), f'{name} wrote no figures'
    if DATA: assert not m.get('skipped_data'), f"{name} left out data sets that are there: {m['skipped_data']}"
    again = run_experiment(name, profile='smoke', out=tmp_path/'runs', fig_dir=tmp_path/'figures', data_root=DATA)
    assert again.get('skipped'), 'a finished run must not be redone'


def test_failing_experiment_is_reported_with_its_cell(tmp_path, monkeypatch):
    "A notebook that fails is reported with the failing cell, and the driver does not raise."
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    import asintrovae.reproduce as R
    nb = new_notebook(cells=[new_code_cell('fig_dir = None', metadata={'tags': ['parameters']}),
                             new_code_cell('x = 1'), new_code_cell('raise ValueError("broken on purpose")')],
                      metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    (tmp_path/'nbs').mkdir()
    nbformat.write(nb, tmp_path/'nbs'/'broken.ipynb')
    monkeypatch.setattr(R, 'project_root', lambda: tmp_path)
    m = R.run_experiment(R.Experiment('broken', 'broken.ipynb'), 'smoke', out=tmp_path/'runs', fig_dir=tmp_path/'f')
    assert m['status'] == 'failed' and 'ValueError' in m['error'] and 'broken on purpose' in m['error']


def test_missing_data_is_a_named_skip(tmp_path):
    "An image experiment whose data is absent completes, and the driver's summary names the data set and where it looked."
    from asintrovae.reproduce import summary_table
    empty = tmp_path/'no-data'; empty.mkdir()
    rel = lambda p: os.path.relpath(p)                  # a relative --data-root means the same inside papermill's folder
    m = run_experiment('reconstruction', profile='smoke', out=tmp_path/'runs', fig_dir=rel(tmp_path/'figures'), data_root=rel(empty))
    assert m['status'] == 'ok', m.get('error')
    assert m['parameters']['data_root'] == str(empty) and m['parameters']['out_dir'] == str(tmp_path/'figures')
    assert set(m['skipped_data']) == {'mnist', 'oxford64'}
    assert 'flowers-subset/jpg' in m['skipped_data']['oxford64'] and str(empty) in m['skipped_data']['mnist']
    summary = summary_table([m])
    assert 'data set mnist skipped' in summary and 'data set oxford64 skipped' in summary
    assert 'Skipped: oxford64' in (tmp_path/'figures'/'table3_smoke.md').read_text()


@pytest.mark.skipif(DATA is None, reason='needs the shared MNIST beside the checkout')
def test_interrupted_image_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    "A run stopped mid-way (Ctrl-C) continues from its last checkpoint when asked again, and ends like an uninterrupted one."
    import torch
    import asintrovae.reproduce as R

    class StopAt(R.TensorBatches):
        def __init__(self, *a, **k): super().__init__(*a, **k); self.count = 0
        def next(self):
            self.count += 1
            if self.count > 24: raise KeyboardInterrupt           # in the second of two 16-iteration epochs
            return super().next()

    whole = R.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path/'whole', data_root=DATA)
    monkeypatch.setattr(R, 'TensorBatches', StopAt)
    with pytest.raises(KeyboardInterrupt): R.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path/'cut', data_root=DATA)
    ckpt = tmp_path/'cut'/'mnist'/'s-introvae_seed0.pt'
    assert torch.load(ckpt, weights_only=False)['it'] == whole['per_epoch'] and not (tmp_path/'cut'/'mnist'/'s-introvae_seed0.json').exists()
    monkeypatch.undo()
    resumed = R.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path/'cut', data_root=DATA)
    assert [e['epoch'] for e in resumed['evals']] == [0.0, 1.0, 2.0]
    assert resumed['final'] == pytest.approx(whole['final'], rel=1e-4)   # exact resume: the same model as without the cut
