"""Build README.md from nbs/index.ipynb (Quarto, and so nbdev_readme, cannot be installed offline).

Usage: python tools/build_readme.py [--check]   (--check: exit 1 if README.md is out of date)
"""
import re
import sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- Generated from nbs/index.ipynb by tools/build_readme.py: edit the notebook, not this file. -->\n\n'


INCLUDE = re.compile(r'^<!-- include: (\S+) -->$', re.M)


def include_results(text):
    "Replace each `<!-- include: figures/x.md -->` line by that file (results are built from runs, never typed in)."
    def sub(m):
        f = ROOT/m.group(1)
        return f.read_text().strip() if f.exists() else f'*({m.group(1)} not produced yet: run `make reproduce`.)*'
    return INCLUDE.sub(sub, text)


def render_readme(nb_path=ROOT/'nbs'/'index.ipynb'):
    "The README text: the notebook's markdown and code cells, without nbdev directives or hidden cells."
    nb = nbformat.read(nb_path, as_version=4)
    keep = []
    for cell in nb.cells:
        lines = cell.source.splitlines()
        if cell.cell_type == 'code':
            if any(l.strip() in ('#| hide', '#|hide') for l in lines): continue
            cell.source = '\n'.join(l for l in lines if not l.lstrip().startswith('#|')).strip()
            cell.outputs = []
            if not cell.source: continue
        keep.append(cell)
    nb.cells = keep
    body, _ = MarkdownExporter().from_notebook_node(nb)
    return HEADER + include_results(body.strip()) + '\n'


if __name__ == '__main__':
    text, readme = render_readme(), ROOT/'README.md'
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text() == text
        print('README.md is in sync with nbs/index.ipynb' if ok else 'README.md is out of date: run python tools/build_readme.py')
        sys.exit(0 if ok else 1)
    readme.write_text(text)
    print(f'wrote {readme}')
