"""pytest collects every library notebook in nbs/ and runs it with nbdev's own runner (nbdev.test.test_nb).

Cells flagged with a settings.ini `tst_flags` flag (slow, gpu) are skipped unless named with --nb-flags.
Figures and image caches the tests and notebooks write go to temporary folders, never into the tracked figures/, the data
folder or ~/.cache (pytest_configure sets a private $ASINTROVAE_CACHE for the session).
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).parent


def pytest_configure(config):
    "One private image cache for the whole session (and the kernels it starts): never the data folder, ~/.cache or a user's $ASINTROVAE_CACHE."
    import tempfile
    config._asintrovae_cache = (tempfile.TemporaryDirectory(prefix='asintrovae-test-cache-'), os.environ.get('ASINTROVAE_CACHE'))
    os.environ['ASINTROVAE_CACHE'] = config._asintrovae_cache[0].name


def pytest_unconfigure(config):
    cache, old = config._asintrovae_cache
    if old is None: os.environ.pop('ASINTROVAE_CACHE', None)
    else: os.environ['ASINTROVAE_CACHE'] = old
    cache.cleanup()


def pytest_addoption(parser):
    parser.addoption('--nb-flags', default='', help='space-separated tst_flags to run anyway, e.g. "slow"')


def skip_flags():
    "The tst_flags of settings.ini (space-separated, as nbdev 2 reads them)."
    from nbdev.config import get_config
    return get_config(path=ROOT).tst_flags.split()


def pytest_collect_file(file_path, parent):
    if file_path.suffix == '.ipynb' and file_path.parent == ROOT/'nbs':
        return NotebookFile.from_parent(parent, path=file_path)


class NotebookFile(pytest.File):
    def collect(self):
        yield NotebookItem.from_parent(self, name=self.path.name)


class NotebookItem(pytest.Item):
    def runtest(self):
        from nbdev.test import test_nb
        forced = self.config.getoption('--nb-flags').split()
        tmp = self.config._tmp_path_factory                          # pytest's own tmp factory
        env = {'ASINTROVAE_FIGURES': str(tmp.mktemp('figures')), 'ASINTROVAE_CACHE': str(tmp.mktemp('cache'))}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try: ok, secs = test_nb(self.path, skip_flags=skip_flags(), force_flags=forced, showerr=True)
        finally:
            for k, v in old.items():
                if v is None: os.environ.pop(k, None)
                else: os.environ[k] = v
        if not ok: raise NotebookFailed(self.path.name)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, NotebookFailed):
            return f'notebook {excinfo.value} failed: the failing cell and its traceback are in the captured stderr above'
        return super().repr_failure(excinfo)

    def reportinfo(self): return self.path, 0, f'notebook {self.path.name}'


class NotebookFailed(Exception): pass
