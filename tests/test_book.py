"""The book (make book) built at the smoke profile and opened page by page in headless Chromium with every request
that would leave the machine refused: images decoded, math typeset without errors, sidebar links resolving.

Needs Chromium: on Debian/Ubuntu `apt-get install chromium` (what .ci/run does), or set ASINTROVAE_CHROMIUM to a
Chromium/Chrome binary. Without one the test is skipped, saying so, except where ASINTROVAE_REQUIRE_BROWSER=1 (CI),
where it fails. Screenshots go to the test's folder, or to $ASINTROVAE_BOOK_SCREENSHOTS when set.
"""
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import build_book  # noqa: E402
from asintrovae.reproduce import EXPERIMENTS  # noqa: E402
from datapaths import SHARED  # noqa: E402

INSTALL = 'install Chromium (Debian/Ubuntu: apt-get install chromium) or set ASINTROVAE_CHROMIUM to a Chrome/Chromium binary'
LOCAL = ('file:', 'data:', 'blob:', 'about:')


def chromium():
    "The Chromium binary, or a skip (a failure where ASINTROVAE_REQUIRE_BROWSER=1) that says how to get one."
    path = os.environ.get('ASINTROVAE_CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
    if path and Path(path).exists(): return path
    if os.environ.get('ASINTROVAE_REQUIRE_BROWSER') == '1': pytest.fail(f'no Chromium for the book test: {INSTALL}')
    pytest.skip(f'no Chromium for the book test: {INSTALL}')


@pytest.fixture(scope='module')
def book(tmp_path_factory):
    "The book built once for this module: chapters executed, experiment notebooks at the smoke profile."
    tmp = tmp_path_factory.mktemp('book')
    pages = build_book.build(out=tmp/'site', runs=tmp/'runs', profile='smoke', data_root=SHARED if SHARED.is_dir() else None)
    return tmp/'site', pages


def test_every_chapter_and_experiment_has_a_page(book):
    site, pages = book
    expected = {'index.html', *(f'{p.stem}.html' for p in build_book.chapters()[1:])}
    expected |= {f'experiment_{n}.html' for n, e in EXPERIMENTS.items() if e.takes_profile}
    assert expected <= set(pages) and all((site/p).exists() for p in pages)
    kernel = (site/'00_kernel.html').read_text()
    assert 'cdnjs' not in kernel and 'require.js' not in kernel and 'mathjax/MathJax.js' in kernel
    assert '#| export' not in kernel and 'book-api' in kernel and '<details class="book-source">' in kernel


def display_math_count(html_page):
    "How many $$...$$ blocks a page's content holds before typesetting: each must become one typeset display equation."
    return html_page.split('<main>', 1)[1].count('$$')//2


def test_pages_in_a_browser_offline(book, tmp_path):
    from playwright.sync_api import sync_playwright
    site, pages = book
    shots = Path(os.environ.get('ASINTROVAE_BOOK_SCREENSHOTS') or tmp_path/'screenshots'); shots.mkdir(parents=True, exist_ok=True)
    refused = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=[
            '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--allow-file-access-from-files'])
        page = browser.new_page(viewport={'width': 1500, 'height': 1000})
        def gate(route):
            if route.request.url.startswith(LOCAL): return route.continue_()
            refused.append(route.request.url); route.abort()
        page.route('**/*', gate)
        errors, missing = [], []
        page.on('pageerror', lambda e: errors.append(str(e)))
        # MathJax probes for its TeX fonts, which the jupyter-server-mathjax copy does not ship; it then uses STIX-Web
        probe = lambda url: '/mathjax/fonts/HTML-CSS/TeX/' in url
        page.on('requestfailed', lambda r: missing.append(r.url) if r.url.startswith('file:') and not probe(r.url) else None)
        for name in pages:
            html = (site/name).read_text()
            page.goto((site/name).as_uri())
            page.wait_for_function("document.body.getAttribute('data-mathjax') === 'done'", timeout=120_000)
            images = page.eval_on_selector_all('img', 'els => els.map(e => [e.getAttribute("src").slice(0, 80), e.complete ? e.naturalWidth : 0])')
            assert all(w > 0 for _, w in images), f'{name}: images not decoded: {[s for s, w in images if not w]}'
            jax = page.evaluate('''() => MathJax.Hub.getAllJax().map(j => ({tex: j.originalText,
                    display: j.root.Get('display') === 'block',
                    error: !!(j.texError || (j.root && j.root.data && j.root.data[0] && j.root.data[0].type === 'merror'))}))''')
            bad = [j['tex'] for j in jax if j['error']]
            assert not bad, f'{name}: MathJax could not typeset {bad[:3]}'
            assert page.locator('.MathJax_Error, .noError, merror').count() == 0, f'{name}: MathJax error nodes'
            raw = page.evaluate('''() => Array.from(document.querySelectorAll('.jp-MarkdownCell')).map(c => {
                    const k = c.cloneNode(true); k.querySelectorAll('code, pre, script, .tex2jax_ignore').forEach(e => e.remove());
                    return k.textContent; }).join(' ')''')
            assert '$' not in raw and '\\frac' not in raw and '\\begin' not in raw, f'{name}: math left untypeset: ...{raw[max(0, raw.find("$") - 80):raw.find("$") + 80]}...'
            expected = display_math_count(html)
            assert sum(j['display'] for j in jax) >= expected, f'{name}: {sum(j["display"] for j in jax)} display equations typeset of {expected}'
            for href in page.eval_on_selector_all('.book-sidebar a', 'els => els.map(e => e.getAttribute("href"))'):
                assert (site/href).exists(), f'{name}: sidebar link {href} leads nowhere'
            page.screenshot(path=str(shots/f'{Path(name).stem}.png'))
            first_figure = page.locator('.jp-OutputArea-output img').first
            if first_figure.count():
                first_figure.scroll_into_view_if_needed(); page.screenshot(path=str(shots/f'{Path(name).stem}-figure.png'))
        browser.close()
    assert not refused, f'requests that would leave the machine: {refused[:5]}'
    assert not errors, f'JavaScript errors: {errors[:5]}'
    assert not missing, f'files the pages ask for that are not in the site: {sorted(set(missing))[:5]}'
    print(f'screenshots in {shots}')


def test_derivation_pages_carry_their_equations_and_figures(book):
    "The kernel and theory chapters: many display equations (each checked as typeset above) and their figures inline."
    site, _ = book
    for page in ('00_kernel.html', '01_theory.html'):
        html = (site/page).read_text()
        assert display_math_count(html) >= 5 and html.count('src="data:image/png;base64,') >= 2, page
