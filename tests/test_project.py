"""Project-level checks: the library is in sync with the notebooks, notebooks are clean, README matches index.ipynb,
the settings are the nbdev 2 ones we rely on, and the slow/gpu flags really skip cells."""
import filecmp, json, shutil, subprocess, sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NBDEV_BIN = Path(sys.executable).parent


def _run(args, cwd):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True)


def _copy_project(tmp_path):
    for name in ('settings.ini', 'setup.py', 'pyproject.toml'): shutil.copy(ROOT/name, tmp_path/name)
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs')
    shutil.copytree(ROOT/'asintrovae', tmp_path/'asintrovae', ignore=shutil.ignore_patterns('__pycache__'))
    return tmp_path


def test_library_in_sync_with_notebooks(tmp_path):
    "nbdev_export on a copy of the project changes nothing under asintrovae/."
    proj = _copy_project(tmp_path)
    shutil.rmtree(proj/'asintrovae')
    r = _run([str(NBDEV_BIN/'nbdev_export')], proj)
    assert r.returncode == 0, r.stderr
    cmp = filecmp.dircmp(ROOT/'asintrovae', proj/'asintrovae', ignore=['__pycache__'])
    stale = cmp.diff_files + cmp.left_only + cmp.right_only
    assert not stale, f'asintrovae/ is out of sync with nbs/ ({stale}): run nbdev_export and commit the result'


def test_notebooks_are_clean(tmp_path):
    "nbdev_clean leaves every notebook unchanged, and no notebook carries outputs."
    proj = _copy_project(tmp_path)
    r = _run([str(NBDEV_BIN/'nbdev_clean')], proj)
    assert r.returncode == 0, r.stderr
    changed = [p.relative_to(proj/'nbs') for p in (proj/'nbs').rglob('*.ipynb')
               if p.read_bytes() != (ROOT/'nbs'/p.relative_to(proj/'nbs')).read_bytes()]
    assert not changed, f'notebooks not clean: {changed}: run nbdev_clean'
    with_outputs = [p.name for p in (ROOT/'nbs').rglob('*.ipynb')
                    if any(c.get('outputs') for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'code')]
    assert not with_outputs, f'notebooks with stored outputs: {with_outputs}'


def test_readme_in_sync_with_index():
    r = _run([sys.executable, str(ROOT/'tools'/'build_readme.py'), '--check'], ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_settings_for_nbdev2():
    "tst_flags must be space-separated (with '|' nbdev 2 skips nothing) and the papermill tag must survive cleaning."
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    assert cfg.tst_flags.split() == ['slow', 'gpu']
    assert 'tags' in cfg.allowed_cell_metadata_keys.split()


def test_parameters_tag_survives_clean():
    "Experiment and chapter notebooks keep papermill's `parameters` tag after nbdev_clean."
    tagged = [p.name for p in (ROOT/'nbs').rglob('*.ipynb')
              if any('parameters' in c.get('metadata', {}).get('tags', []) for c in json.loads(p.read_text())['cells'])]
    assert '00_kernel.ipynb' in tagged


@pytest.mark.parametrize('flag', ['slow', 'gpu'])
def test_flagged_cells_are_skipped_unless_forced(tmp_path, flag):
    "A cell flagged slow/gpu that would fail is skipped by nbdev's runner, and runs (and fails) when forced."
    from nbdev.test import test_nb
    nb = new_notebook(cells=[new_code_cell('x = 1'), new_code_cell(f'#| {flag}\nraise RuntimeError("flagged cell ran")'),
                             new_code_cell('assert x == 1')])
    fn = tmp_path/'flagged.ipynb'
    nbformat.write(nb, fn)
    ok, _ = test_nb(fn, skip_flags=['slow', 'gpu'], showerr=False)
    assert ok
    ok, _ = test_nb(fn, skip_flags=['slow', 'gpu'], force_flags=[flag], showerr=False)
    assert not ok


def test_failing_notebook_cell_fails_the_runner(tmp_path):
    "The notebook runner is not vacuous: an assert that fails makes it report failure."
    from nbdev.test import test_nb
    fn = tmp_path/'bad.ipynb'
    nbformat.write(new_notebook(cells=[new_code_cell('assert 1 == 2')]), fn)
    assert not test_nb(fn, showerr=False)[0]


def test_readme_commands_match_ci():
    "The README's two commands are the Makefile's targets, and .ci/run runs the README's test command."
    readme = (ROOT/'README.md').read_text()
    assert 'make reproduce' in readme and 'make test' in readme
    assert 'make test' in (ROOT/'.ci'/'run').read_text()
    targets = (ROOT/'Makefile').read_text()
    assert 'reproduce: install' in targets and 'test: install' in targets
