"""Every experiment notebook under nbs/experiments runs through the papermill driver at its smoke profile."""
import json
import os
from pathlib import Path

import pytest

from asintrovae.reproduce import EXPERIMENTS, run_experiment

ROOT = Path(__file__).resolve().parents[1]
from datapaths import SHARED                         # the real data beside the checkout, as in CI
DATA = str(SHARED) if SHARED.exists() else None
PROFILED = [name for name, e in EXPERIMENTS.items() if e.takes_profile]


def test_every_experiment_notebook_is_registered():
    on_disk = {p.relative_to(ROOT/'nbs').as_posix() for p in (ROOT/'nbs'/'experiments').glob('*.ipynb') if not p.name.startswith('.')}
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


def project_with_notebook(root, monkeypatch, name, *sources):
    "A project at `root` for the driver, with one notebook nbs/<name>: a parameters cell (fig_dir) and a code cell per source."
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    import asintrovae.reproduce as R
    nb = new_notebook(cells=[new_code_cell('fig_dir = None', metadata={'tags': ['parameters']}), *map(new_code_cell, sources)],
                      metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    (root/'nbs').mkdir()
    nbformat.write(nb, root/'nbs'/name)
    monkeypatch.setattr(R, 'project_root', lambda: root)


def test_failing_experiment_is_reported_with_its_cell(tmp_path, monkeypatch):
    "A notebook that fails is reported with the failing cell, and the driver does not raise."
    import asintrovae.reproduce as R
    project_with_notebook(tmp_path, monkeypatch, 'broken.ipynb', 'x = 1', 'raise ValueError("broken on purpose")')
    m = R.run_experiment(R.Experiment('broken', 'broken.ipynb'), 'smoke', out=tmp_path/'runs', fig_dir=tmp_path/'f')
    assert m['status'] == 'failed' and 'ValueError' in m['error'] and 'broken on purpose' in m['error']


def test_missing_data_is_a_skip_not_a_success(tmp_path, capsys):
    "Data absent: the summary says 'skipped (no data)' with where it looked, the exit status is 3, and nothing is recorded as done."
    from asintrovae.reproduce import main, read_json
    empty = tmp_path/'no-data'; empty.mkdir()
    rel = lambda p: os.path.relpath(p)                  # a relative --data-root means the same inside papermill's folder
    argv = ['--profile', 'smoke', '--only', 'reconstruction', '--out', str(tmp_path/'runs'), '--figures', rel(tmp_path/'figures'),
            '--data-root', rel(empty)]
    assert main(argv) == 3
    out = capsys.readouterr()
    assert '| reconstruction | skipped (no data) |' in out.out and 'data/README.md' in out.out and 'exit status 3' in out.err
    assert f'no data for oxford64: no folder images under {empty}' in out.out and str(empty/'flowers-subset'/'jpg') in out.out
    m = read_json(tmp_path/'runs'/'smoke'/'reconstruction.manifest.json')
    assert m['status'] == 'no data' and set(m['skipped_data']) == {'mnist', 'oxford64'} and not m['trained_any']
    assert m['parameters']['data_root'] == str(empty) and m['parameters']['out_dir'] == str(tmp_path/'figures')
    table = (tmp_path/'figures'/'table3_smoke.md').read_text()
    assert 'No data set of this table was found' in table and 'Skipped (no data): oxford64' in table and '| method |' not in table
    assert main(argv) == 3                              # not recorded as done: asked again, it runs again
    assert 'already done' not in capsys.readouterr().out


def test_a_data_root_that_does_not_exist_is_an_error_at_once(tmp_path, capsys):
    from asintrovae.reproduce import main
    with pytest.raises(SystemExit) as e: main(['--profile', 'smoke', '--out', str(tmp_path), '--data-root', str(tmp_path/'nowhere')])
    assert e.value.code == 2 and f'data root {tmp_path/"nowhere"} does not exist' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())                 # nothing ran


def test_help_names_the_default_profile_and_each_budget(capsys):
    from asintrovae.reproduce import main
    with pytest.raises(SystemExit): main(['--help'])
    out = capsys.readouterr().out
    assert 'default: laptop' in out and 'exit status' in out
    for line in ('smoke   checks that every notebook runs', 'laptop  meaningful numbers on a 2-core CPU: about', "paper   the authors' protocol"):
        assert line in out, out


@pytest.mark.skipif(DATA is None, reason='needs the shared MNIST beside the checkout')
def test_damaged_records_are_reported_then_redone(tmp_path, capfd):
    "A cut-off driver manifest and a cut-off run record: each is named with its reason (the run's from inside the kernel), then redone."
    from asintrovae.reproduce import DamagedRecordWarning
    args = dict(profile='smoke', out=tmp_path/'runs', fig_dir=tmp_path/'figures', data_root=DATA)
    assert run_experiment('stability', **args)['status'] == 'ok'
    manifest = tmp_path/'runs'/'smoke'/'stability.manifest.json'
    record = tmp_path/'figures'/'image_runs_smoke'/'mnist'/'s-introvae_seed0.json'
    for f in (manifest, record): f.write_text(f.read_text()[:200])          # cut off, as by a full disk
    capfd.readouterr()
    with pytest.warns(DamagedRecordWarning, match='stability.manifest.json'): m = run_experiment('stability', **args)
    assert m['status'] == 'ok' and not m.get('skipped')
    err = capfd.readouterr().err
    assert f'damaged record {record} (JSONDecodeError' in err, err[-3000:]
    assert record.with_name(record.name + '.damaged').exists() and json.loads(record.read_text())['status'] == 'done'


def test_ctrl_c_prints_one_line_that_says_how_to_resume(tmp_path):
    "SIGINT twice while a notebook runs: no traceback, one line naming what finished, what was cut and the command; exit 130."
    import signal, subprocess, sys, time
    empty = tmp_path/'no-data'; empty.mkdir()
    cmd = [sys.executable, '-m', 'asintrovae.reproduce', '--profile', 'smoke', '--only', 'stability', 'toy_2d',
           '--out', str(tmp_path/'runs'), '--figures', str(tmp_path/'figures'), '--data-root', str(empty)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = ''
    while '[smoke] toy_2d:' not in out:                 # stability (no data: seconds) has finished, toy_2d has started
        line = p.stdout.readline(); assert line, f'the driver ended early: {p.stderr.read()[-3000:]}'; out += line
    time.sleep(6)                                       # inside the toy notebook's training
    p.send_signal(signal.SIGINT); time.sleep(0.3); p.send_signal(signal.SIGINT)
    rest, err = p.communicate(timeout=120)
    text = out + rest + err
    assert p.returncode == 130 and 'Traceback' not in text and 'Error' not in text.replace('Errors', ''), text[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith('Interrupted during toy_2d (smoke profile); finished: stability.') and ' '.join(cmd[3:]) in last, last


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
    assert not list((tmp_path/'cut'/'mnist').glob('*.lock'))                # the claim is released when the run is cut
    monkeypatch.undo()
    resumed = R.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path/'cut', data_root=DATA)
    assert [e['epoch'] for e in resumed['evals']] == [0.0, 1.0, 2.0]
    assert resumed['final'] == pytest.approx(whole['final'], rel=1e-4)   # exact resume: the same model as without the cut


@pytest.mark.skipif(DATA is None, reason='needs the shared MNIST beside the checkout')
def test_an_image_run_another_process_trains_is_waited_for_and_read_back(tmp_path):
    "run_image_method: a run whose lock a live process holds is not trained here; its manifest is read back once written."
    import shutil, socket, subprocess, sys, threading, time
    import asintrovae.reproduce as R
    whole = R.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path/'elsewhere', data_root=DATA)
    here = tmp_path/'here'/'mnist'; here.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    try:
        (here/'s-introvae_seed0.lock').write_text(f'{socket.gethostname()} {other.pid}')
        result = {}
        job = threading.Thread(target=lambda: result.update(run=R.run_image_method('s-introvae', 'mnist', 'smoke', tmp_path/'here',
                                                                                    data_root=DATA, poll=0.05)))
        job.start(); time.sleep(1.0)
        assert job.is_alive() and not list(here.glob('*.pt')) and not list(here.glob('*_progress.npz'))   # waiting, not training
        for f in ('s-introvae_seed0.npz', 's-introvae_seed0.json'):         # the other process finishes, writing atomically
            shutil.copy(tmp_path/'elsewhere'/'mnist'/f, here/'copying'); (here/'copying').replace(here/f)
        job.join(60)
        assert not job.is_alive() and result['run']['final'] == whole['final'] and not list(here.glob('*.pt'))
    finally:
        other.kill(); other.wait()


def test_relative_out_is_under_the_callers_folder(tmp_path, monkeypatch):
    "A relative --out (the README's second process: --out runs/second) is the caller's, though papermill runs the notebook in its own folder."
    import asintrovae.reproduce as R
    project_with_notebook(tmp_path, monkeypatch, 'fine.ipynb', 'x = 1')
    work = tmp_path/'work'; work.mkdir(); monkeypatch.chdir(work)
    m = R.run_experiment(R.Experiment('fine', 'fine.ipynb'), 'smoke', out='runs/second', fig_dir=tmp_path/'f')
    assert m['status'] == 'ok', m.get('error')
    done = work/'runs'/'second'/'smoke'
    assert (done/'fine.ipynb').exists() and R.read_json(done/'fine.manifest.json')['status'] == 'ok'
    assert [p.name for p in (tmp_path/'nbs').iterdir()] == ['fine.ipynb'], 'the driver left files beside the notebooks'
    assert not list(done.glob('.*.ipynb')), 'the copy without flagged cells was not removed'


def test_training_news_reaches_the_terminal(tmp_path, monkeypatch, capfd):
    "A run trained inside a notebook says in the driver's terminal (stderr) when it starts and how it ended, with the run's name."
    import asintrovae.reproduce as R
    train = ("from asintrovae.reproduce import run_toy_method\nfrom asintrovae.train import TrainConfig\n"
             "cfg = TrainConfig(iterations=20, warmup=5, log_every=10, eval_every=10, checkpoint_every=10, progress=False)\n"
             f"m = run_toy_method('vae', '8gaussians', ['C1'], 1, cfg, 16, {str(tmp_path/'toy')!r}, hidden=16)")
    project_with_notebook(tmp_path, monkeypatch, 'trains.ipynb', train)
    capfd.readouterr()
    m = R.run_experiment(R.Experiment('trains', 'trains.ipynb'), 'smoke', out=tmp_path/'runs', fig_dir=tmp_path/'f')
    assert m['status'] == 'ok', m.get('error')
    news = [l for l in capfd.readouterr().err.splitlines() if l.startswith(R.PROGRESS_MARK)]
    assert len(news) == 2, news
    assert news[0].endswith('toy/vae: training 1 member of vae on 8gaussians, from scratch, 20 iterations'), news
    done = R.read_json(tmp_path/'toy'/'vae.json')
    assert news[1].endswith(f"toy/vae: done in {done['train_seconds']:,.0f} s: toy KL {done['final']['kl'][0]:.3g}, modes {done['final']['modes'][0]:.0f}"), news
