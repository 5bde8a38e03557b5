"""The suite's image parts against a *writable* copy of the data (as a user's `cp -r` of shared/data is): they pass and
leave the copy unchanged. In CI the shared copy is read-only, so only this test can see a write into the data folder."""
import os
import shutil
import subprocess
import sys

import pytest

from datapaths import ROOT, SHARED, tree

IMAGE_PARTS = ['tests/test_image_data.py', 'tests/test_image_training.py', 'nbs/02_data.ipynb',
               'tests/test_experiments.py::test_experiment_runs_at_smoke_profile[reconstruction]']   # MNIST and the Flowers jpgs
SETS = ['MNIST', 'cifar10-partial', 'celeba-subset', 'flowers-subset']


@pytest.mark.skipif(not all((SHARED/s).is_dir() for s in SETS), reason=f'needs the shared data sets {SETS} in {SHARED}')
def test_image_parts_pass_and_leave_a_writable_data_copy_unchanged(tmp_path):
    data = tmp_path/'data'
    for s in SETS: shutil.copytree(SHARED/s, data/s, copy_function=shutil.copy)   # a plain copy: every folder writable
    for p in [data, *data.rglob('*')]: p.chmod(0o755 if p.is_dir() else 0o644)
    before = tree(data)
    env = {**os.environ, 'ASINTROVAE_TEST_DATA': str(data), 'ASINTROVAE_DATA': str(data)}
    env.pop('ASINTROVAE_CACHE', None)                    # the inner session must make its own private cache
    r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *IMAGE_PARTS], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, f'the image tests failed on a writable data copy:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}'
    assert ' passed' in r.stdout and ' skipped' not in r.stdout, r.stdout[-2000:]
    assert tree(data) == before, f'the tests wrote into the data folder: {sorted(set(tree(data)) ^ set(before))[:10]}'
