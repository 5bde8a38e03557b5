"""pytest collects every library notebook in nbs/ and runs it with nbdev's own runner (nbdev.test.test_nb).

Cells flagged with a settings.ini `tst_flags` flag (slow, gpu) are skipped unless named with --nb-flags.
Figures the notebooks write go to a temporary folder, never into the tracked figures/.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).parent


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
        fig_dir = self.config._tmp_path_factory.mktemp('figures')   # pytest's own tmp factory
        old = os.environ.get('ASINTROVAE_FIGURES')
        os.environ['ASINTROVAE_FIGURES'] = str(fig_dir)
        try: ok, secs = test_nb(self.path, skip_flags=skip_flags(), force_flags=forced, showerr=True)
        finally:
            if old is None: os.environ.pop('ASINTROVAE_FIGURES', None)
            else: os.environ['ASINTROVAE_FIGURES'] = old
        if not ok: raise NotebookFailed(self.path.name)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, NotebookFailed):
            return f'notebook {excinfo.value} failed: the failing cell and its traceback are in the captured stderr above'
        return super().repr_failure(excinfo)

    def reportinfo(self): return self.path, 0, f'notebook {self.path.name}'


class NotebookFailed(Exception): pass
