"""The built book in a real browser: Debian's headless Chromium driven by Playwright.

The site in ``_build/html`` is served on 127.0.0.1 and every page of the TOC is opened, in the
English edition and in the Chinese one (``zh/``, ``tools/translations.py``). A page
passes when it loads with no console error, no failed or external request, no broken image and
no broken internal link (target file and ``#anchor``); when its math was typeset by the MathJax
served from the site (no raw ``$$``, no MathJax error node); when its Chinese text is drawn with
real glyphs, not the empty boxes of a missing font; and, for a chapter, when its code cells and
outputs are visible and its exercise solutions are hidden. A full-page screenshot of every page
is saved under ``_build/screenshots/``. Run it after ``make book`` (``make browser``).

The browser is found by ``tools/chromium.py`` (``COURSE_CHROMIUM``, the system's Chromium or
Chrome, Playwright's own); ``make browser`` installs Debian's ``chromium`` and
``fonts-noto-cjk`` first where it can. Without a browser the test fails with the command to
run; ``COURSE_SKIP_BROWSER=1`` skips it instead.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from notebook_rules import ROOT, toc_files

from tools.chromium import find_chromium, install_command

pytestmark = pytest.mark.browser
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_FLAGS = [  # as on this machine's probe: no background traffic on a closed network
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every page of the TOC in both editions: the English site and the Chinese one in zh/.
PAGES = toc_files() + [f"zh/{entry}" for entry in toc_files()]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def site():
    """Serve _build/html on a free port of 127.0.0.1; yield its base URL."""
    if not (HTML / "index.html").is_file():
        pytest.fail("the book is not built: run `make book` before the browser test")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if os.environ.get("COURSE_SKIP_BROWSER") == "1":
        pytest.skip("COURSE_SKIP_BROWSER=1: the real-browser test is skipped")
    try:
        executable = find_chromium()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    if executable is None:
        pytest.fail(
            f"no Chromium: `{install_command()}` (`make browser` does it where it can), "
            "or set COURSE_CHROMIUM=/path/to/chrome, or COURSE_SKIP_BROWSER=1 to skip"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
    print(f"\nbrowser test: {len(PAGES)} pages in {time.perf_counter() - started:.1f} s")


@functools.cache
def _anchors(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\bid="([^"]+)"', text))


def broken_internal_link(href: str, page_url: str, base: str) -> str | None:
    """Why ``href`` (as written on the page at ``page_url``) is broken, or None if it is not."""
    absolute = urljoin(page_url, href)
    if not absolute.startswith(base):
        return None  # external: not followed offline
    parts = urlsplit(absolute)
    target = HTML / unquote(parts.path.removeprefix(urlsplit(base).path))
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"{href}: no file {target.relative_to(HTML)}"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in _anchors(target):
        return f"{href}: no element id={fragment!r} in {target.relative_to(HTML)}"
    return None


MATH_STATE = """async () => {
  const mathNodes = document.querySelectorAll('.math, .amsmath, div.math, span.math');
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
    if (MathJax.typesetPromise) { await MathJax.typesetPromise(); }
  }
  // prose only: code listings (e.g. docstrings shown by show_source) may contain TeX
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement.closest('pre, code, script, style, mjx-container, textarea')
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT });
  let text = '';
  while (walker.nextNode()) { text += walker.currentNode.nodeValue; }
  return {
    mathNodes: mathNodes.length,
    typeset: document.querySelectorAll('mjx-container').length,
    errors: document.querySelectorAll('mjx-merror').length,
    rawDisplay: (text.match(/\\$\\$/g) || []).length,
    rawInline: (text.match(/\\\\\\(|\\\\\\[/g) || []).length,
    rawDollar: (text.match(/\\$[^\\s$\\d][^$\\n]*?[^\\s$]\\$/g) || []).slice(0, 3),
    mathjaxSrc: Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s)),
  };
}"""

IMAGES = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.all(images.map(img => img.complete ? null :
      new Promise(done => { img.onload = img.onerror = done; })));
  return images.filter(img => !(img.complete && img.naturalWidth > 0))
               .map(img => img.getAttribute('src'));
}"""


# Chinese text drawn with a CJK font: two different characters of the page's prose, drawn on a
# canvas in the font the page gives them, must give two different glyph images, each with ink
# and each unlike a private-use character (no font has one: it is drawn as the missing-glyph
# box). With no CJK font every character is that same box. Widths do not tell: a box and a
# CJK glyph are both 1 em wide.
CJK_GLYPHS = """() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement.closest('pre, code, script, style, mjx-container')
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT });
  let element = null, chars = [];
  while (walker.nextNode() && chars.length < 2) {
    for (const ch of walker.currentNode.nodeValue.match(/[\u4e00-\u9fff]/g) || []) {
      if (chars.includes(ch)) continue;
      chars.push(ch);
      element = element || walker.currentNode.parentElement;
      if (chars.length === 2) break;
    }
  }
  if (chars.length < 2) return null;
  const style = getComputedStyle(element);
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const glyph = ch => {
    ctx.clearRect(0, 0, 64, 64);
    ctx.font = `${style.fontStyle} ${style.fontWeight} 40px ${style.fontFamily}`;
    ctx.textBaseline = 'top';
    ctx.fillText(ch, 8, 8);
    const alpha = ctx.getImageData(0, 0, 64, 64).data.filter((_, i) => i % 4 === 3);
    return {ink: alpha.reduce((a, b) => a + (b > 0), 0), key: alpha.join(',')};
  };
  const [a, b, box] = [glyph(chars[0]), glyph(chars[1]), glyph('\ue000')];
  return {chars: chars.join(''), font: style.fontFamily, inked: a.ink > 0 && b.ink > 0,
          distinct: a.key !== b.key, notBoxes: a.key !== box.key && b.key !== box.key};
}"""


def cjk_problem(state: dict | None) -> str | None:
    """Why the page's Chinese text is not drawn with real glyphs, or None when it is."""
    if state is None or (state["inked"] and state["distinct"] and state["notBoxes"]):
        return None
    return (
        f"Chinese text {state['chars']!r} is drawn as missing-glyph boxes in font "
        f"{state['font']!r} ({state}): install a CJK font: `{install_command(['fonts-noto-cjk'])}`"
    )


@pytest.mark.parametrize("entry", PAGES)
def test_page_renders_in_a_real_browser(entry, site, browser):
    page_url = urljoin(site, f"{entry}.html")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))

    def local_only(route):
        if route.request.url.startswith(site) or route.request.url.startswith("data:"):
            return route.continue_()
        problems.append(f"external request: {route.request.url}")
        return route.abort()

    page.route("**/*", local_only)
    try:
        response = page.goto(page_url, wait_until="load")
        assert response is not None and response.ok, f"{entry}: HTTP {response and response.status}"
        page.wait_for_load_state("networkidle")

        problems += [f"broken image: {src}" for src in page.evaluate(IMAGES)]

        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
        for href in set(hrefs):
            if href.startswith(("mailto:", "javascript:")):
                continue
            why = broken_internal_link(href, page_url, site)
            if why:
                problems.append(f"broken link: {why}")

        math = page.evaluate(MATH_STATE)
        if math["mathNodes"]:
            if not math["mathjaxSrc"] or not all(s.startswith(site) for s in math["mathjaxSrc"]):
                problems.append(f"MathJax not served by the site: {math['mathjaxSrc']}")
            if math["typeset"] < math["mathNodes"]:
                problems.append(f"math typeset {math['typeset']} of {math['mathNodes']} nodes")
        if math["errors"]:
            problems.append(f"{math['errors']} MathJax error nodes")
        if math["rawDisplay"] or math["rawInline"] or math["rawDollar"]:
            problems.append(f"raw TeX delimiters in the text: {math}")

        cjk = cjk_problem(page.evaluate(CJK_GLYPHS))
        if cjk:
            problems.append(cjk)

        if entry.removeprefix("zh/").startswith("notebooks/"):
            inputs = page.locator("div.cell:not(.tag_hide-cell) div.cell_input")
            outputs = page.locator("div.cell:not(.tag_hide-cell) div.cell_output")
            if inputs.count() == 0 or not inputs.first.is_visible():
                problems.append("no visible code cell")
            if outputs.count() == 0 or not any(
                outputs.nth(i).is_visible() for i in range(min(outputs.count(), 5))
            ):
                problems.append("no visible cell output")
            hidden = page.locator("div.cell.tag_hide-cell div.cell_input")
            for i in range(hidden.count()):
                if hidden.nth(i).is_visible():
                    problems.append(f"solution cell {i} is shown before it is opened")

        name = entry.replace("/", "__") + ".png"
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
    finally:
        page.close()
    assert not problems, f"{entry}:\n  " + "\n  ".join(problems)


def test_chinese_text_is_drawn_with_a_cjk_font(site, browser):
    """The glossary's Chinese names are real glyphs (the page test checks every page that has
    Chinese text; this one makes sure the check saw some)."""
    page = browser.new_page()
    try:
        page.goto(urljoin(site, "book/glossary.html"), wait_until="load")
        state = page.evaluate(CJK_GLYPHS)
    finally:
        page.close()
    assert state is not None, "book/glossary: no Chinese text found to check"
    assert cjk_problem(state) is None, cjk_problem(state)


def test_exercise_solution_opens_on_click(site, browser):
    """Hidden solutions are one click away: the first one becomes visible when opened."""
    page = browser.new_page()
    try:
        page.goto(urljoin(site, "notebooks/03_1_parameters.html"), wait_until="load")
        solution = page.locator("div.cell.tag_hide-cell").first
        code = solution.locator("div.cell_input")
        assert not code.is_visible()
        solution.locator("summary").first.click()
        code.wait_for(state="visible", timeout=5000)
        assert code.is_visible()
    finally:
        page.close()
