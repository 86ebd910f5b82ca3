"""The exported explainer (``hgmviz explain SCENARIO -o out.html``) in a real browser: Debian's
Chromium driven by Playwright's Python package (never ``playwright install``), offline, with
JavaScript disabled for the page (the handout must not need it).

For every shipped scenario: the page loads from a ``file://`` URL, requests nothing else, logs
no console error and raises no page error, and every step's SVG renders — its box on the page
and the bounding box of its drawing are non-empty.  In CI (``CI=true``) a missing Chromium or
Playwright fails the test instead of skipping it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from hgmviz import explain as E
from hgmviz.scenarios import list_scenarios, read_scenario

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHIPPED = [i.name for i in list_scenarios()]
IN_CI = os.environ.get("CI") == "true"


def require_browser():
    """Skip without Chromium, Playwright or Graphviz — except in CI, where it is a failure."""
    problems = []
    if not os.access(CHROMIUM, os.X_OK):
        problems.append("%s is missing (scripts/_install.sh installs Debian's chromium with "
                        "apt-get)" % CHROMIUM)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright Python package is missing (pip install -c "
                        "requirements/constraints.txt -e '.[test]')")
    if shutil.which("dot") is None:
        problems.append("Graphviz's dot is missing (the HTML export needs it)")
    if problems:
        msg = "the explainer browser test needs: " + "; ".join(problems)
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def browser_context():
    require_browser()
    from playwright.sync_api import sync_playwright
    user_dir = tempfile.mkdtemp(prefix="hgmviz-explain-chromium-")   # a fresh profile
    pw = sync_playwright().start()
    ctx = None
    try:
        ctx = pw.chromium.launch_persistent_context(
            user_dir, executable_path=CHROMIUM, headless=True,
            args=[a for a in CHROMIUM_ARGS if a != "--headless"],
            java_script_enabled=False, offline=True,
            viewport={"width": 1280, "height": 900})
        yield ctx
    finally:
        if ctx is not None:
            ctx.close()
        pw.stop()
        shutil.rmtree(user_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``hgmviz explain NAME -o NAME.html`` for every shipped scenario, through the CLI."""
    folder = tmp_path_factory.mktemp("explain-html")
    out = {}
    for name in SHIPPED:
        path = folder / (name + ".html")
        assert E.main([name, "-o", str(path)]) == 0, name
        out[name] = path
    return out


# Each step's <svg>: its box on the page and the bounding box of what it draws (getBBox).
# Runs in Playwright's utility world, so it works with the page's JavaScript disabled.
MEASURE = """
() => Array.from(document.querySelectorAll('section.step')).map(sec => {
  const svgs = sec.querySelectorAll('svg');
  const out = {id: sec.id, count: svgs.length};
  if (svgs.length) {
    const r = svgs[0].getBoundingClientRect();
    const b = svgs[0].getBBox();
    out.box = [r.width, r.height];
    out.bbox = [b.width, b.height];
    out.texts = svgs[0].querySelectorAll('text').length;
  }
  return out;
})
"""

# Every text drawn inside a node or cluster ends left of that box's right border, and every
# caption line inside the drawing: Graphviz measures text narrower than browsers draw it
# (hgmviz.render.dot.TEXT_FIT), which once let long rows cross their boxes.
FIT = """
() => {
  const right = els => Math.max(-1e9, ...Array.from(els, e => e.getBBox())
                                       .filter(b => b.width > 0).map(b => b.x + b.width));
  const bad = [];
  let texts = 0;
  document.querySelectorAll('section.step svg').forEach(svg => {
    const step = svg.closest('section.step').id;
    svg.querySelectorAll('g.node, g.cluster').forEach(g => {
      const edge = right(g.querySelectorAll(':scope > polygon, :scope > path, :scope > polyline'));
      g.querySelectorAll(':scope > text').forEach(t => {
        texts++;
        const b = t.getBBox();
        if (b.x + b.width > edge + 0.5)
          bad.push([step, g.querySelector('title').textContent, t.textContent, b.x + b.width - edge]);
      });
    });
    const vb = svg.viewBox.baseVal;
    svg.querySelectorAll('g.graph > text').forEach(t => {
      texts++;
      const b = t.getBBox();
      if (b.x + b.width > vb.x + vb.width - 4 + 0.5)
        bad.push([step, 'caption', t.textContent, b.x + b.width - (vb.x + vb.width - 4)]);
    });
  });
  return {texts, bad};
}
"""


@pytest.mark.parametrize("name", SHIPPED)
def test_every_step_svg_renders_without_console_errors(name, browser_context, exported):
    path: Path = exported[name]
    page = browser_context.new_page()
    console, errors, requests = [], [], []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: errors.append("request failed: %s" % r.url))
    try:
        page.goto(path.as_uri(), wait_until="load")
        steps = page.evaluate(MEASURE)
        fit = page.evaluate(FIT)
        title = page.title()
    finally:
        page.close()
    total = len(read_scenario(next(i.path for i in list_scenarios() if i.name == name)).steps)
    assert len(steps) == total, steps
    for st in steps:
        assert st["count"] >= 1, st          # one drawing per scheme (or per process)
        w, h = st["box"]
        bw, bh = st["bbox"]
        assert w > 0 and h > 0, "%s: empty box on the page: %s" % (st["id"], st)
        assert bw > 0 and bh > 0, "%s: empty drawing: %s" % (st["id"], st)
        assert st["texts"] > 0, st
    assert fit["texts"] > 0
    assert fit["bad"] == [], "text wider than its box (step, box, text, overflow in pt): %s" % (
        fit["bad"][:5],)
    assert title
    assert [c for c in console if c[0] == "error"] == []
    assert errors == []
    assert requests == [path.as_uri()], "the page fetched more than itself: %s" % requests


# Every SVG text's size in CSS px as laid out (font size times the drawing's scale), the
# page's and each figure's horizontal overflow.
LAYOUT = """
() => {
  const px = [];
  document.querySelectorAll('figure.diagram svg text').forEach(t => {
    const m = t.getScreenCTM();
    if (m && t.textContent.trim())
      px.push(parseFloat(t.getAttribute('font-size')) * Math.hypot(m.a, m.b));
  });
  const wide = Array.from(document.querySelectorAll('figure.diagram'))
    .filter(f => f.scrollWidth > f.clientWidth + 1).map(f => f.querySelector('figcaption')
    .textContent);
  return {minPx: Math.min(...px), n: px.length, wide,
          pageOverflow: document.documentElement.scrollWidth - window.innerWidth};
}
"""
# the page prints landscape: Letter's (279 mm) is narrower than A4's (297 mm); 12 mm margins
PRINT_PX = round((279 - 24) / 25.4 * 96)


@pytest.mark.parametrize("name", SHIPPED)
def test_fits_a_1280_px_screen_and_prints_legibly_on_a4(name, browser_context, exported,
                                                        tmp_path):
    """On screen at 1280 px: no horizontal overflow beyond the page, and no figure scrolls.
    Printed (print CSS, landscape, Letter's width, the narrower): every diagram text >= 6 pt;
    the A4 PDF is written."""
    page = browser_context.new_page()
    try:
        page.goto(exported[name].as_uri(), wait_until="load")
        screen = page.evaluate(LAYOUT)
        assert screen["pageOverflow"] <= 0, (name, screen)
        assert screen["wide"] == [], (name, screen["wide"][:3])
        assert screen["minPx"] >= 9, (name, screen)       # shrinks to 3/4 at most on screen
        page.emulate_media(media="print")
        page.set_viewport_size({"width": PRINT_PX, "height": 800})
        printed = page.evaluate(LAYOUT)
        pdf = tmp_path / (name + ".pdf")
        page.pdf(path=str(pdf), format="A4", landscape=True, print_background=True)
    finally:
        page.close()
    print("%s: smallest diagram text on screen %.1f px, printed %.1f pt (%d texts)"
          % (name, screen["minPx"], printed["minPx"] * 0.75, printed["n"]))
    assert printed["minPx"] * 0.75 >= 6.0, (name, printed)
    assert pdf.stat().st_size > 1000 and pdf.read_bytes().startswith(b"%PDF")


# The smallest text of the page (computed font size in CSS px) and whether it overflows.
TEXT_PX = """
() => { let min = 1e9; for (const e of document.querySelectorAll('body *')) {
          if (![...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
          min = Math.min(min, parseFloat(getComputedStyle(e).fontSize)); }
        return {minPx: min, overflow: document.documentElement.scrollWidth - innerWidth}; }
"""


def test_homework_handouts_print_one_student_a_page(browser_context, tmp_path):
    """``hgmviz homework --class 3 -o DIR``: students.html prints on A4 one page per student,
    the key too, all text >= 9 pt; on a 1280 px screen nothing overflows."""
    import re
    from hgmviz.handout import write_handouts
    write_handouts(tmp_path, 3, first=11, formats=("html",))
    pages = {}
    page = browser_context.new_page()
    try:
        for name in ("students.html", "key.html"):
            page.set_viewport_size({"width": 1280, "height": 900})
            page.emulate_media(media="screen")
            page.goto((tmp_path / name).as_uri(), wait_until="load")
            screen = page.evaluate(TEXT_PX)
            assert screen["overflow"] <= 0, (name, screen)
            page.emulate_media(media="print")
            printed = page.evaluate(TEXT_PX)
            pdf = tmp_path / (name + ".pdf")
            page.pdf(path=str(pdf), format="A4")
            pages[name] = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
            print("%s: smallest text %.1f px on screen, %.1f pt printed, %d A4 pages"
                  % (name, screen["minPx"], printed["minPx"] * 0.75, pages[name]))
            assert printed["minPx"] * 0.75 >= 9.0, (name, printed)
    finally:
        page.close()
    assert pages["students.html"] == 3
    assert pages["key.html"] >= 3          # a page (or more) per student
