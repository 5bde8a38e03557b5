"""Build the book: every chapter of nbs/ executed and rendered, with the experiment notebooks, into one static HTML site
that loads nothing from the network (make book). Quarto, and so nbdev's own docs site, cannot be installed offline.

Usage: python tools/build_book.py [--out _book] [--runs runs] [--profile PROFILE]

* Chapters (nbs/index.ipynb, nbs/NN_*.ipynb) are executed here, cells flagged `#| slow` / `#| gpu` left out as in the
  tests, figures written to a temporary folder; an executed chapter is kept in <out>/_executed and reused while its
  source and the library are unchanged.
* Experiment notebooks come from the last reproduction run (runs/<profile>/<name>.ipynb, the newest profile that has
  them, or --profile), or are run at the smoke profile when absent.
* Pages: `#| hide` cells are left out, `#| export` cells show the signature and docstring of what they define with the
  source folded under them, every output and figure is kept; math is typeset by the copy of MathJax that the
  jupyter-server-mathjax package ships, copied into the site.
"""
import argparse
import ast
import contextlib
import hashlib
import html
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = Path(__file__).resolve().parent/'book_template'
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_readme import include_results  # noqa: E402  (the README's `<!-- include: -->` lines, for the index page)

DIRECTIVE = re.compile(r'^\s*#\|\s*(\S+)(.*)$')


def directives(source):
    "The nbdev directives of a cell (`#| export`, `#| hide`, ...) -> set of names."
    return {m.group(1) for m in map(DIRECTIVE.match, source.splitlines()) if m}


def no_eval(source):
    "Does the cell carry `#| eval: false` (nbdev's runner does not execute it)?"
    return any(m and m.group(1) == 'eval:' and m.group(2).strip().lower() == 'false' for m in map(DIRECTIVE.match, source.splitlines()))


def chapters(root=ROOT):
    "The library notebooks in reading order: index first, then 00_..., 01_..."
    return [root/'nbs'/'index.ipynb', *sorted((root/'nbs').glob('[0-9][0-9]_*.ipynb'))]


def title_of(nb, fallback):
    "The first level-1 heading of a notebook, else `fallback`."
    for c in nb.cells:
        if c.cell_type == 'markdown':
            m = re.search(r'^#\s+(.+)$', c.source, re.M)
            if m: return m.group(1).strip()
    return fallback


# ---------------------------------------------------------------- execution

@contextlib.contextmanager
def environment(**values):
    "Set (or, with None, remove) environment variables for the kernels started inside the block; restore them after."
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None: os.environ.pop(k, None)
        else: os.environ[k] = v
    try: yield
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def execute(path, cache, fig_dir, timeout=3600):
    "The executed copy of chapter `path` (flagged cells left out), from `cache` while it and the library are unchanged."
    from asintrovae.reproduce import kernel_manager_logging_to
    from nbclient import NotebookClient
    h = hashlib.sha256(path.read_bytes())
    for f in sorted((ROOT/'asintrovae').glob('*.py')): h.update(f.read_bytes())   # a chapter also runs the rest of the library
    digest = h.hexdigest()[:16]
    done = cache/f'{path.stem}-{digest}.ipynb'
    if done.exists(): return nbformat.read(done, as_version=4)
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and (directives(c.source) & {'slow', 'gpu'} or no_eval(c.source)))]
    print(f'executing {path.relative_to(ROOT)} ...', flush=True)
    # inline figures in the outputs; one thread unless the caller says otherwise (small ops: more threads mostly spin,
    # and on a busy 2-core machine 2 threads made 05_train 20 times slower than 1)
    with environment(ASINTROVAE_FIGURES=str(fig_dir), MPLBACKEND=None, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1')):
        NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}},
                       kernel_manager_class=kernel_manager_logging_to(cache/f'{path.stem}.kernel.log')).execute()
    for old_copy in cache.glob(f'{path.stem}-*.ipynb'): old_copy.unlink()
    nbformat.write(nb, done)
    return nb


def executed_experiment(name, runs, profile=None, data_root=None):
    "The executed notebook of experiment `name` from runs/<profile>/ (newest profile if not given), else run at smoke on `data_root`."
    from asintrovae.reproduce import PROFILES, run_experiment
    found = [runs/p/f'{name}.ipynb' for p in ([profile] if profile else PROFILES) if (runs/p/f'{name}.ipynb').exists()]
    if not found:
        print(f'running experiment {name} at the smoke profile (no executed copy under {runs}) ...', flush=True)
        with environment(MPLBACKEND=None, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1')):
            m = run_experiment(name, 'smoke', out=runs, data_root=data_root)
        if m['status'] == 'failed': raise RuntimeError(f"experiment {name} failed at smoke: {m.get('error')}")
        found = [runs/'smoke'/f'{name}.ipynb']
    path = max(found, key=lambda p: p.stat().st_mtime)
    return nbformat.read(path, as_version=4), path.parent.name


# ---------------------------------------------------------------- pages

def api_summary(source):
    "HTML listing the signature and first docstring line of each public function and class an exported cell defines."
    try: tree = ast.parse(source)
    except SyntaxError: return ''
    items = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith('_'):
            sig = f'class {node.name}' if isinstance(node, ast.ClassDef) else f'{node.name}({ast.unparse(node.args)})'
            doc = html.escape((ast.get_docstring(node) or '').strip().split('\n')[0])
            doc = re.sub(r'`([^`]+)`', r'<code>\1</code>', doc)              # docstrings are text: only `code` is marked up
            items.append(f'<li><code><b>{html.escape(sig)}</b></code>' + (f': {doc}' if doc else '') + '</li>')
    # tex2jax_ignore: a docstring's $ENV_VARIABLE is not math
    return f'<div class="book-api tex2jax_ignore"><ul>{"".join(items)}</ul></div>' if items else ''


def book_cells(nb):
    "The cells a reader sees: `#| hide` cells out, directive lines stripped, exported cells tagged and summarised."
    out = []
    for c in nb.cells:
        names = directives(c.source)
        if 'hide' in names or 'default_exp' in names: continue
        if c.cell_type == 'code':
            c.source = '\n'.join(l for l in c.source.splitlines() if not DIRECTIVE.match(l)).strip()
            if not c.source and not c.get('outputs'): continue
            if 'export' in names or 'exports' in names:
                c.metadata.setdefault('tags', []).append('export')
                summary = api_summary(c.source)
                if summary: out.append(nbformat.v4.new_markdown_cell(summary))
        out.append(c)
    return out


def render(nb, page, title, nav, depth_root=''):
    "HTML of one page with the book's template."
    from nbconvert import HTMLExporter
    nb.cells = book_cells(nb)
    nb.metadata['title'] = title
    exporter = HTMLExporter(template_name='lab', template_file='book.html.j2', extra_template_paths=[str(TEMPLATE_DIR)],
                            exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={'book': dict(root=depth_root, page=page, nav=nav, title='asintrovae')})
    return body


def mathjax_dir():
    "The MathJax 2 copy that the jupyter-server-mathjax package ships."
    try: import jupyter_server_mathjax
    except ImportError as e:
        raise SystemExit('the book needs MathJax from the jupyter-server-mathjax package: pip install -e ".[dev]"') from e
    return Path(jupyter_server_mathjax.__file__).parent/'static'


def build(out=ROOT/'_book', runs=ROOT/'runs', profile=None, data_root=None):
    "Execute and render every chapter and experiment into `out`; return the list of pages written."
    from asintrovae.reproduce import EXPERIMENTS
    out, runs = Path(out), Path(runs)
    cache = out/'_executed'; cache.mkdir(parents=True, exist_ok=True)
    fig_tmp = Path(tempfile.mkdtemp(prefix='book-figures-'))
    docs = []                                             # (page, title, notebook, section)
    for path in chapters():
        nb = execute(path, cache, fig_tmp)
        page = 'index.html' if path.stem == 'index' else f'{path.stem}.html'
        if path.stem == 'index':
            for c in nb.cells:
                if c.cell_type == 'markdown': c.source = include_results(c.source)
        docs.append((page, title_of(nb, path.stem), nb, 'Home' if path.stem == 'index' else 'Chapters'))
    for name, exp in EXPERIMENTS.items():
        if not exp.takes_profile: continue
        nb, prof = executed_experiment(name, runs, profile, data_root)
        docs.append((f'experiment_{name}.html', f'{title_of(nb, name).split(":")[0]} ({prof})', nb, 'Experiments'))
    nav = {}
    for page, title, _, section in docs: nav.setdefault(section, []).append((page, title))
    for page, title, nb, _ in docs:
        (out/page).write_text(render(nb, page, title, list(nav.items())))
        print(f'wrote {out/page}', flush=True)
    shutil.copytree(mathjax_dir(), out/'mathjax', dirs_exist_ok=True)
    shutil.copytree(ROOT/'figures', out/'figures', dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('image_runs_*', 'toy_runs_*', '*.json', '*.csv', '*.npz', '*.pt'))
    shutil.rmtree(fig_tmp, ignore_errors=True)
    return [page for page, *_ in docs]


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=str(ROOT/'_book'), help='the site folder (default: _book, ignored by git)')
    p.add_argument('--runs', default=str(ROOT/'runs'), help="where the reproduction's executed notebooks are")
    p.add_argument('--profile', default=None, help='take the experiment notebooks of this profile (default: the newest)')
    p.add_argument('--data-root', default=None, help='the image data, for experiments run at smoke (default: $ASINTROVAE_DATA or data/)')
    a = p.parse_args()
    pages = build(Path(a.out), Path(a.runs), a.profile, a.data_root)
    print(f'{len(pages)} pages in {a.out}: open {Path(a.out)/"index.html"}')
