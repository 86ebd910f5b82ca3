"""The explorer in a real browser: JupyterLab and Voila serving ``notebooks/explorer-demo.ipynb``,
driven by Debian's Chromium through Playwright (never ``playwright install``).

Each test starts its server on 127.0.0.1 (a free port, a token, a temporary copy of the
notebook: JupyterLab may autosave outputs into what it opens), runs the notebook, clicks
operation buttons and undo, and checks that the SVG in the page changed accordingly and that
no widget failed to display.  It measures click → new SVG in the DOM (p95, printed) and saves
a screenshot under a temporary folder (its path is printed).  In CI (``CI=true``) a missing
Chromium or Playwright fails the test instead of skipping it.

``python tests/test_browser.py --docs docs/`` takes the README's screenshots
(``docs/explorer.png``, ``docs/compare.png``) the same way, through Voila.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explorer-demo.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WIDGET_ERRORS = ("Error displaying widget", "model not found")
CLICKS = 20                         # fresh operations measured (touch / MADV_DONTNEED pairs)


# ------------------------------------------------------------------------------------------
# set-up: the browser, the servers
# ------------------------------------------------------------------------------------------
def require_browser():
    """Skip without Chromium or Playwright — except in CI, where it is a failure."""
    problems = []
    if not os.access(CHROMIUM, os.X_OK):
        problems.append("%s is missing (scripts/_install.sh installs Debian's chromium with "
                        "apt-get)" % CHROMIUM)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright Python package is missing (pip install -c "
                        "requirements/constraints.txt -e '.[test]')")
    if problems:
        msg = "browser tests need: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(work: Path) -> dict:
    env = dict(os.environ)
    # the kernel is started as "python" from PATH: make it this interpreter (the venv's)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(work / "lab-settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(work / "lab-workspaces")
    env["JUPYTER_RUNTIME_DIR"] = str(work / "runtime")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Server:
    """A server process started here (its own process group), stopped by its id."""

    def __init__(self, cmd, cwd: Path, env: dict, port: int, log: Path):
        self.port = port
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, path: str, timeout: float = 40.0):
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited with %s:\n%s" % (self.proc.returncode,
                                                                       self.log()))
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not answer %s in %.0f s:\n%s" % (url, timeout,
                                                                          self.log()))

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)     # the server shuts its kernels down
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


@contextlib.contextmanager
def served(srv: Server, ctx=None):
    """The body runs with ``srv`` up: if it fails, the server's log is printed; in every case
    the browser context ``ctx`` (if any) closes and the server stops."""
    try:
        yield srv
    except Exception:
        print(srv.log())
        raise
    finally:
        if ctx is not None:
            ctx.close()
        srv.stop()


def workdir(prefix: str, notebooks=None) -> Path:
    """A temporary folder with copies of the notebooks and JupyterLab settings that keep the
    news toast away."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    for nb in notebooks or [NOTEBOOK]:
        shutil.copy(nb, work / Path(nb).name)
    s = work / "lab-settings" / "@jupyterlab" / "apputils-extension"
    s.mkdir(parents=True)
    (s / "notification.jupyterlab-settings").write_text(json.dumps(
        {"fetchNews": "false", "checkForUpdates": False}))
    return work


def start_lab(work: Path, token: str, root: Path = None) -> Server:
    """JupyterLab serving ``root`` (default ``work``; its settings, logs and browser profile
    stay in ``work``)."""
    port = free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", "--port=%d" % port, "--ServerApp.port_retries=0",
           "--IdentityProvider.token=%s" % token, "--ServerApp.root_dir=%s" % (root or work),
           "--LabApp.expose_app_in_browser=True"]
    srv = Server(cmd, work, server_env(work), port, work / "server.log")
    srv.wait_ready("/api/status?token=%s" % token)
    return srv


def start_voila(work: Path, notebook: str, token: str) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "voila", notebook, "--no-browser", "--port=%d" % port,
           "--Voila.ip=127.0.0.1", "--token=%s" % token, "--Voila.port_retries=0",
           "--show_tracebacks=True"]
    srv = Server(cmd, work, server_env(work), port, work / "voila.log")
    _wait_port(srv)
    return srv


def _wait_port(srv: Server, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            raise RuntimeError("voila exited with %s:\n%s" % (srv.proc.returncode, srv.log()))
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", srv.port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("voila did not listen in %.0f s:\n%s" % (timeout, srv.log()))


def launch_browser(pw, user_dir: Path, width=1400, height=1100):
    return pw.chromium.launch_persistent_context(
        str(user_dir), executable_path=CHROMIUM, headless=True,
        args=[a for a in CHROMIUM_ARGS if a != "--headless"],
        viewport={"width": width, "height": height})


# ------------------------------------------------------------------------------------------
# driving the explorer
# ------------------------------------------------------------------------------------------
ROOT_SEL = ".hgmviz-explorer"
DIAGRAM_SEL = ROOT_SEL + " .hgmviz-diagram-box .hgmviz-diagram svg"

# Click the button named NAME and wait until the diagram shows a new version; returns the
# milliseconds from the click to the new SVG in the DOM, the version and the SVG markup.
CLICK_JS = """
async ([name, timeout]) => {
  const root = document.querySelector('.hgmviz-explorer');
  const btn = [...root.querySelectorAll('button')].find(b => b.textContent.trim() === name);
  if (!btn) throw new Error('no button ' + name);
  const box = root.querySelector('.hgmviz-diagram-box');
  const v0 = box.querySelector('.hgmviz-diagram').dataset.version;
  return await new Promise((resolve, reject) => {
    let t0 = 0;
    const done = () => {
      const d = box.querySelector('.hgmviz-diagram');
      if (d && d.dataset.version !== v0 && d.querySelector('svg')) {
        obs.disconnect();
        resolve({ms: performance.now() - t0, version: Number(d.dataset.version),
                 svg: d.innerHTML});
        return true;
      }
      return false;
    };
    const obs = new MutationObserver(done);
    obs.observe(box, {childList: true, subtree: true, attributes: true, characterData: true});
    setTimeout(() => { obs.disconnect(); reject(new Error('no new diagram after ' + name)); },
               timeout);
    t0 = performance.now();
    btn.click();
  });
}
"""


def diagram(page) -> dict:
    return page.evaluate("""() => { const d = document.querySelector(
        '.hgmviz-explorer .hgmviz-diagram-box .hgmviz-diagram');
        return {version: Number(d.dataset.version), svg: d.innerHTML}; }""")


def click(page, name: str, timeout_ms: int = 15000) -> dict:
    return page.evaluate(CLICK_JS, [name, timeout_ms])


def counters_text(page) -> str:
    return page.locator(ROOT_SEL + " .hgmviz-counters").first.text_content()


def widget_errors(page) -> list:
    body = page.evaluate("() => document.body.innerText")
    return [e for e in WIDGET_ERRORS if e in body]


def p95(xs) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def exercise(page, where: str, clicks: int = CLICKS) -> dict:
    """Touch, undo, redo; then ``clicks`` fresh operations and as many undo / redo: assert
    the SVG changed as it should, return the timings (ms)."""
    page.wait_for_selector(DIAGRAM_SEL, timeout=60000)
    assert not widget_errors(page), widget_errors(page)
    d0 = diagram(page)
    assert re.search(r"folio_ref_count\(\)\s*1\b", counters_text(page)), counters_text(page)
    r = click(page, "touch")
    assert r["version"] > d0["version"] and r["svg"] != d0["svg"], "touch did not redraw"
    assert re.search(r"folio_ref_count\(\)\s*~\s*2\s*\(was 1\)", counters_text(page)), \
        counters_text(page)
    assert "PUD" in r["svg"] or "PMD" in r["svg"]
    u = click(page, "undo")
    assert u["svg"] == d0["svg"], "undo did not bring the first diagram back"
    rd = click(page, "redo")
    assert rd["svg"] == r["svg"], "redo did not bring the touched diagram back"
    fresh, nav = [], []
    for i in range(clicks // 2):
        a = click(page, "MADV_DONTNEED")
        assert a["svg"] != r["svg"]
        b = click(page, "touch")
        fresh += [a["ms"], b["ms"]]
    for i in range(clicks // 2):
        nav.append(click(page, "undo")["ms"])
        nav.append(click(page, "redo")["ms"])
    # keyboard: a focused button answers Enter
    v = diagram(page)["version"]
    page.locator(ROOT_SEL + " button", has_text=re.compile(r"^\s*undo\s*$")).first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("(v) => Number(document.querySelector('.hgmviz-explorer "
                           ".hgmviz-diagram-box .hgmviz-diagram').dataset.version) > v", arg=v,
                           timeout=10000)
    assert not widget_errors(page), widget_errors(page)
    out = {"where": where, "fresh_p95_ms": p95(fresh), "fresh_median_ms": sorted(fresh)[
        len(fresh) // 2], "undo_redo_p95_ms": p95(nav), "n": len(fresh) + len(nav)}
    print("\n%s: click → new SVG in the DOM: fresh operations p95 %.0f ms (median %.0f, n=%d);"
          " undo/redo p95 %.0f ms" % (where, out["fresh_p95_ms"], out["fresh_median_ms"],
                                      len(fresh), out["undo_redo_p95_ms"]))
    return out


def screenshot(page, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hgmviz-browser-"))
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    print("screenshot: %s" % path)
    return path


# ------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def playwright():
    require_browser()
    from playwright.sync_api import sync_playwright
    pw = sync_playwright().start()
    yield pw
    pw.stop()


def test_explorer_in_jupyterlab(playwright):
    t0 = time.monotonic()
    work = workdir("hgmviz-lab-")
    token = secrets.token_hex(16)
    srv = start_lab(work, token)
    ctx = launch_browser(playwright, work / "chromium")
    try:
        page = ctx.new_page()
        page.goto("http://127.0.0.1:%d/lab/tree/%s?token=%s" % (srv.port, NOTEBOOK.name, token),
                  timeout=60000)
        # "idle" shows in the toolbar before the kernel is connected; the status bar's
        # "| Idle" means it is (a Run All sent earlier is dropped)
        page.wait_for_function("() => document.body.innerText.includes('| Idle')",
                               timeout=60000)
        news = page.get_by_role("button", name="No", exact=True)
        if news.count():
            news.first.click()
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        timings = exercise(page, "JupyterLab")
        screenshot(page, "jupyterlab-explorer.png")
        assert timings["n"] == 2 * CLICKS
    except Exception:
        print(srv.log())
        raise
    finally:
        ctx.close()
        srv.stop()
        shutil.rmtree(work / "chromium", ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)         # kept (with server.log) when it failed
    print("JupyterLab test: %.1f s" % (time.monotonic() - t0))


def test_explorer_in_voila(playwright):
    t0 = time.monotonic()
    work = workdir("hgmviz-voila-")
    token = secrets.token_hex(16)
    srv = start_voila(work, NOTEBOOK.name, token)
    ctx = launch_browser(playwright, work / "chromium")
    try:
        page = ctx.new_page()
        page.goto("http://127.0.0.1:%d/?token=%s" % (srv.port, token), timeout=60000)
        exercise(page, "Voila")
        screenshot(page, "voila-explorer.png")
    except Exception:
        print(srv.log())
        raise
    finally:
        ctx.close()
        srv.stop()
        shutil.rmtree(work / "chromium", ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    print("Voila test: %.1f s" % (time.monotonic() - t0))


# ------------------------------------------------------------------------------------------
# the README's screenshots
# ------------------------------------------------------------------------------------------
def _docs_notebook(path: Path, call: str):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                               "display_name": "Python 3 (ipykernel)"}})
    nb.cells = [new_code_cell("import hgmviz.widgets as hw"), new_code_cell(call)]
    nbformat.write(nb, str(path))


def _set_select(page, label: str, option: str):
    sel = page.locator(ROOT_SEL + " .widget-dropdown").filter(has_text=label).locator(
        "select").first
    sel.select_option(label=option)
    page.wait_for_timeout(300)


def _hgm_clicks(page, pieces=(("4 KiB", 0), ("32 KiB", 1))):
    """MADV_SPLIT, UFFDIO_REGISTER, then UFFDIO_CONTINUE of a piece of each granularity."""
    click(page, "MADV_SPLIT")
    click(page, "UFFDIO_REGISTER")
    for gran, steps in pieces:
        _set_select(page, "granularity", gran)
        handle = page.locator(ROOT_SEL + " .widget-hslider").filter(has_text="offset") \
            .locator(".noUi-handle").first
        handle.focus()
        for _ in range(steps):
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
        click(page, "UFFDIO_CONTINUE")


def docs_screenshots(out: Path):
    """docs/explorer.png and docs/compare.png, through Voila (no notebook chrome)."""
    from playwright.sync_api import sync_playwright
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hgmviz-docs-"))
    _docs_notebook(work / "explore.ipynb", 'hw.explore(geometry="toy", scheme="per_piece")')
    _docs_notebook(work / "compare.ipynb", 'hw.compare(geometry="toy", schemes=["per_piece", '
                   '"thp_like", "hstate_present"])')
    token = secrets.token_hex(16)
    with sync_playwright() as pw:
        for name, width in (("explore", 1280), ("compare", 1280)):
            srv = start_voila(work, "%s.ipynb" % name, token)
            ctx = launch_browser(pw, work / ("chromium-" + name), width=width, height=900)
            try:
                page = ctx.new_page()
                page.goto("http://127.0.0.1:%d/?token=%s" % (srv.port, token), timeout=60000)
                page.wait_for_selector(DIAGRAM_SEL, timeout=60000)
                _hgm_clicks(page)
                page.wait_for_timeout(500)
                target = out / ("explorer.png" if name == "explore" else "compare.png")
                root = page.locator(ROOT_SEL).first
                # the whole explorer inside the viewport: Chromium paints no more
                box = root.bounding_box()
                page.set_viewport_size({"width": width, "height": int(box["y"] +
                                                                      box["height"]) + 20})
                page.wait_for_timeout(300)
                # down to the first steps of the log (the rest is more of the same)
                log = page.locator(ROOT_SEL + " .hgmviz-log-box").first.bounding_box()
                box = root.bounding_box()
                page.screenshot(path=str(target), clip={
                    "x": box["x"], "y": box["y"], "width": box["width"],
                    "height": min(box["height"], log["y"] - box["y"] + 170)})
                print("%s: %d bytes" % (target, target.stat().st_size))
            finally:
                ctx.close()
                srv.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--docs":
        docs_screenshots(Path(sys.argv[2]))
    else:
        print("usage: python tests/test_browser.py --docs FOLDER   (the tests: pytest)")
        sys.exit(2)


# ------------------------------------------------------------------------------------------
# legibility (issue 15): widths, themes, text sizes, clipping, contrast; screenshots
# ------------------------------------------------------------------------------------------
WIDTHS = (1024, 1366, 1920)
THEMES = ("light", "dark")
SCREENS = ROOT / "docs" / "screens"
MIN_TEXT_PX = 11.0                  # hgmviz.widgets.views.MIN_TEXT_PX

# every SVG text's rendered height (font size times the drawing's scale), every counters
# cell that clips its content, and the contrast of every explorer text on its background
MEASURE_JS = """
() => {
  const root = document.querySelector('.hgmviz-explorer');
  const px = [];
  for (const t of root.querySelectorAll('.hgmviz-diagram svg text')) {
    const fs = parseFloat(t.getAttribute('font-size') || getComputedStyle(t).fontSize);
    const m = t.getScreenCTM();
    if (m && t.textContent.trim()) px.push(fs * Math.hypot(m.a, m.b));
  }
  const clipped = [];
  for (const c of root.querySelectorAll('.hgmviz-counters td, .hgmviz-counters th')) {
    if (c.scrollWidth > c.clientWidth + 1) clipped.push(c.textContent.trim());
  }
  const box = root.querySelector('.hgmviz-counters-box');
  const boxClip = box ? (box.scrollWidth > box.clientWidth + 1 &&
                         getComputedStyle(box).overflowX === 'hidden') : false;
  const rgb = s => (s.match(/[0-9.]+/g) || []).map(Number);
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 :
                     Math.pow((v + 0.055) / 1.055, 2.4); };
                     return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const bg = el => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el)
                     .backgroundColor); if (c.length >= 3 && (c.length < 4 || c[3] > 0.5))
                     return c; } return [255, 255, 255]; };
  const low = [];
  const sel = '.hgmviz-status, .hgmviz-title, .hgmviz-counters td, .hgmviz-counters th, ' +
              '.hgmviz-counters caption, .hgmviz-log td, .hgmviz-log caption, .hgmviz-legend li';
  for (const el of root.querySelectorAll(sel)) {
    if (!el.textContent.trim() || !el.getClientRects().length) continue;
    for (const e of [el, ...el.querySelectorAll('span, b, small, code')]) {
      if (!e.textContent.trim()) continue;
      const fg = rgb(getComputedStyle(e).color), b = bg(e);
      const a = fg.length >= 4 ? fg[3] : 1;
      const mix = [0, 1, 2].map(i => fg[i] * a + b[i] * (1 - a));
      const l1 = lum(mix), l2 = lum(b);
      const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      if (ratio < 4.5) low.push([e.className || e.tagName, e.textContent.trim().slice(0, 30),
                                 ratio.toFixed(2)]);
    }
  }
  // a button whose label is cut (ellipsis), a control beyond the explorer's right edge
  const cut = [...root.querySelectorAll('button')].filter(b => b.getClientRects().length &&
      b.scrollWidth > b.clientWidth + 1).map(b => b.textContent.trim() || b.title);
  const right = root.getBoundingClientRect().right;
  const off = [...root.querySelectorAll(':scope > .widget-hbox > *')].filter(e =>
      e.getClientRects().length && e.getBoundingClientRect().right > right + 1)
      .map(e => (e.textContent.trim() || e.className).slice(0, 30));
  return {minPx: px.length ? Math.min(...px) : null, n: px.length, clipped, boxClip, low,
          cut, off,
          pageOverflow: document.documentElement.scrollWidth > window.innerWidth + 1};
}
"""


def _legibility_notebooks(work: Path):
    _docs_notebook(work / "explore.ipynb", 'hw.explore(geometry="toy", scheme="per_piece")')
    _docs_notebook(work / "compare.ipynb", 'hw.compare(geometry="toy", schemes=["per_piece", '
                   '"thp_like", "hstate_present"])')


def _js_click(page, name: str):
    """Click a button even when its accordion is closed; wait for the redraw."""
    v = diagram(page)["version"]
    page.evaluate("""(name) => [...document.querySelectorAll('.hgmviz-explorer button')]
        .find(b => b.textContent.trim() === name).click()""", name)
    page.wait_for_function("(v) => Number(document.querySelector('.hgmviz-explorer "
                           ".hgmviz-diagram-box .hgmviz-diagram').dataset.version) > v", arg=v,
                           timeout=60000)


def _check_state(page, what: str, problems: list):
    page.wait_for_timeout(300)
    m = page.evaluate(MEASURE_JS)
    print("%s: smallest diagram text %.1f px (%d texts), clipped cells %d, low contrast %d, "
          "cut buttons %d, controls off the right edge %d"
          % (what, m["minPx"] or 0, m["n"], len(m["clipped"]), len(m["low"]), len(m["cut"]),
             len(m["off"])))
    if m["cut"] or m["off"]:
        problems.append("%s: buttons cut %s, controls off the edge %s" % (what, m["cut"][:5],
                                                                          m["off"][:5]))
    if m["minPx"] is None or m["minPx"] < MIN_TEXT_PX - 0.05:
        problems.append("%s: diagram text %.1f px < %.0f" % (what, m["minPx"] or 0,
                                                            MIN_TEXT_PX))
    if m["clipped"] or m["boxClip"]:
        problems.append("%s: clipped counters %s" % (what, m["clipped"][:5]))
    if m["low"]:
        problems.append("%s: contrast < 4.5: %s" % (what, m["low"][:5]))


def _explore_states(page, what: str, problems: list, shot, path: Path):
    """The explorer states both legibility tests measure (Voila and JupyterLab): touch + fork,
    a third process (then ``shot(page, path)``), the drill run; ``what`` prefixes each name."""
    _js_click(page, "touch")
    _js_click(page, "fork")
    _check_state(page, "%s fork" % what, problems)
    _js_click(page, "spawn")
    _check_state(page, "%s three processes" % what, problems)
    shot(page, path)
    _js_click(page, "drill: run to guard or wrap")
    _check_state(page, "%s drill" % what, problems)


def _compare_state(page, what: str, problems: list):
    """The compare view's measured state: touch + fork."""
    _js_click(page, "touch")
    _js_click(page, "fork")
    _check_state(page, "%s compare" % what, problems)


def _shot(page, path: Path):
    root = page.locator(ROOT_SEL).first
    box = root.bounding_box()
    vp = page.viewport_size
    page.set_viewport_size({"width": vp["width"], "height": int(box["y"] + box["height"]) + 20})
    page.wait_for_timeout(300)
    box = root.bounding_box()
    page.screenshot(path=str(path), clip={"x": 0, "y": box["y"], "width": vp["width"],
                                          "height": box["height"]})
    page.set_viewport_size(vp)


@pytest.mark.parametrize("theme", THEMES)
def test_explorer_is_legible_at_every_width(playwright, theme):
    """At 1024, 1366 and 1920 px, light and dark (Voila's themes are JupyterLab's): after a
    fork and with three processes, after the overflow drill, and in a comparison of three
    schemes, the diagram's text is >= 11 px, no counter value is clipped, and every
    explorer text has WCAG AA contrast.  Screenshots go to docs/screens/."""
    work = workdir("hgmviz-legible-", notebooks=[])
    _legibility_notebooks(work)
    token = secrets.token_hex(16)
    port = free_port()
    cmd = [sys.executable, "-m", "voila", str(work), "--no-browser", "--port=%d" % port,
           "--Voila.ip=127.0.0.1", "--token=%s" % token, "--Voila.port_retries=0",
           "--theme=%s" % theme]
    srv = Server(cmd, work, server_env(work), port, work / "voila.log")
    _wait_port(srv)
    SCREENS.mkdir(parents=True, exist_ok=True)
    problems = []
    with served(srv):
        for width in WIDTHS:
            ctx = launch_browser(playwright, work / ("chromium-%d" % width), width=width,
                                 height=900)
            try:
                page = ctx.new_page()
                page.goto("http://127.0.0.1:%d/voila/render/explore.ipynb?token=%s"
                          % (port, token), timeout=90000)
                page.wait_for_selector(DIAGRAM_SEL, timeout=90000)
                assert not widget_errors(page), widget_errors(page)
                _explore_states(page, "%s %d" % (theme, width), problems,
                                _shot, SCREENS / ("explore-%s-%d.png" % (theme, width)))
                page.goto("http://127.0.0.1:%d/voila/render/compare.ipynb?token=%s"
                          % (port, token), timeout=90000)
                page.wait_for_selector(DIAGRAM_SEL, timeout=90000)
                _compare_state(page, "%s %d" % (theme, width), problems)
                if width == 1366:
                    _shot(page, SCREENS / ("compare-%s-%d.png" % (theme, width)))
            finally:
                ctx.close()
    shutil.rmtree(work, ignore_errors=True)
    assert problems == []


# ------------------------------------------------------------------------------------------
# the same measurements inside JupyterLab itself; the tour's glossary link (issue 15)
# ------------------------------------------------------------------------------------------
LAB_WIDTHS = (1024, 1366, 1920)
OVERRIDES = ROOT / "scripts" / "jupyterlab" / "overrides.json"
LAB_THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


def lab_settings(work: Path, theme: str = "light"):
    """The user settings a lab.sh install gives (scripts/jupyterlab/overrides.json: Markdown
    notebooks open as notebooks, no news), plus the theme."""
    settings = json.loads(OVERRIDES.read_text())
    settings.setdefault("@jupyterlab/apputils-extension:themes", {})["theme"] = LAB_THEMES[theme]
    for plugin, values in settings.items():
        ext, name = plugin.split(":")
        folder = work / "lab-settings" / ext
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ("%s.jupyterlab-settings" % name)
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **values}))


def lab_open(ctx, srv: Server, token: str, path: str, run: bool = True):
    """A new page with ``path`` (alone) open in JupyterLab, its kernel connected and (``run``)
    every cell run."""
    page = ctx.new_page()
    # ?reset: a fresh workspace, so that only ``path`` is open (no tab restored from before)
    page.goto("http://127.0.0.1:%d/lab/tree/%s?reset&token=%s" % (srv.port, path, token),
              timeout=90000)
    page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=90000)
    news = page.get_by_role("button", name="No", exact=True)
    if news.count():
        news.first.click()
    if run:
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    return page


def _lab_shot(page, path: Path):
    """The viewport with the explorer scrolled to its top (JupyterLab scrolls inside the
    notebook panel, not the page)."""
    vp = page.viewport_size
    page.set_viewport_size({"width": vp["width"], "height": 1300})     # controls and diagram
    page.wait_for_timeout(400)
    page.evaluate("() => document.querySelector('.hgmviz-explorer').scrollIntoView()")
    page.wait_for_timeout(400)
    page.screenshot(path=str(path))
    page.set_viewport_size(vp)
    print("screenshot: %s" % path)


@pytest.mark.parametrize("theme", THEMES)
def test_explorer_is_legible_in_jupyterlab(playwright, theme):
    """As test_explorer_is_legible_at_every_width, inside JupyterLab (file browser open, its
    default) at 1024, 1366 and 1920 px, light and dark: diagram text >= 11 px, no clipped counter,
    every explorer text WCAG AA.  Screenshots: docs/screens/lab-*.png."""
    work = workdir("hgmviz-lab-legible-", notebooks=[])
    (work / "notebooks").mkdir()
    _legibility_notebooks(work / "notebooks")    # the file browser shows only these two
    lab_settings(work, theme)
    token = secrets.token_hex(16)
    srv = start_lab(work, token, root=work / "notebooks")
    SCREENS.mkdir(parents=True, exist_ok=True)
    problems = []
    with served(srv):
        for width in LAB_WIDTHS:
            ctx = launch_browser(playwright, work / ("chromium-%d" % width), width=width,
                                 height=900)
            try:
                page = lab_open(ctx, srv, token, "explore.ipynb")
                page.wait_for_selector(DIAGRAM_SEL, timeout=90000, state="attached")
                assert not widget_errors(page), widget_errors(page)
                _explore_states(page, "lab %s %d" % (theme, width), problems,
                                _lab_shot, SCREENS / ("lab-explore-%s-%d.png" % (theme, width)))
                page.close()
                page = lab_open(ctx, srv, token, "compare.ipynb")
                page.wait_for_selector(DIAGRAM_SEL, timeout=90000, state="attached")
                _compare_state(page, "lab %s %d" % (theme, width), problems)
                _lab_shot(page, SCREENS / ("lab-compare-%s-%d.png" % (theme, width)))
            finally:
                ctx.close()
    shutil.rmtree(work, ignore_errors=True)
    assert problems == []


def test_glossary_link_from_the_tour_opens_rendered(playwright):
    """lab.sh's settings (Markdown notebooks open as notebooks): the tour's Glossary link opens
    docs/glossary.md rendered, with no "Select Kernel" dialog; running the tour and saving
    every open document leaves both files byte for byte as they were."""
    work = workdir("hgmviz-lab-glossary-", notebooks=[])
    sources = {}
    for rel in ("notebooks/00-tour.md", "notebooks/jupytext.toml", "docs/glossary.md",
                "docs/jupytext.toml"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, work / rel)
        sources[rel] = (ROOT / rel).read_bytes()
    lab_settings(work)
    token = secrets.token_hex(16)
    srv = start_lab(work, token)
    ctx = launch_browser(playwright, work / "chromium", width=1366, height=900)
    with served(srv, ctx):
        page = lab_open(ctx, srv, token, "notebooks/00-tour.md")
        # the run-all finished: the status bar is idle again and the last code cell has run
        page.wait_for_function("""() => { const p = document.querySelectorAll(
            '.jp-Notebook .jp-CodeCell .jp-InputPrompt'); return p.length &&
            /\\[\\d+\\]/.test(p[p.length - 1].textContent) &&
            document.body.innerText.includes('| Idle'); }""", timeout=180000)
        link = page.locator(".jp-RenderedMarkdown a", has_text=re.compile(r"^Glossary$")).first
        link.scroll_into_view_if_needed()
        link.click()
        page.wait_for_function("""() => [...document.querySelectorAll('.lm-TabBar-tabLabel')]
            .some(t => t.textContent.trim() === 'glossary.md')""", timeout=60000)
        page.wait_for_timeout(3000)        # a dialog would be up by now
        dialogs = page.locator(".jp-Dialog").count()
        shown = page.evaluate("""() => { const w = window.jupyterapp.shell.currentWidget;
            const h = w.node.querySelector('.jp-RenderedMarkdown h1');
            return {title: w.title.label, h1: h ? h.textContent.replace('¶', '').trim() : null,
                    strong: w.node.querySelectorAll('.jp-RenderedMarkdown strong').length,
                    raw: w.node.innerText.includes('**page, base page**')}; }""")
        path = Path(tempfile.mkdtemp(prefix="hgmviz-browser-")) / "lab-glossary.png"
        page.screenshot(path=str(path))
        print("glossary: %s; dialogs %d; screenshot: %s" % (shown, dialogs, path))
        assert dialogs == 0, page.locator(".jp-Dialog").first.inner_text()
        assert shown["title"] == "glossary.md" and shown["h1"] == "Glossary", shown
        assert shown["strong"] > 20 and not shown["raw"], shown
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save-all')")
        page.wait_for_timeout(3000)
        for rel, data in sources.items():
            assert (work / rel).read_bytes() == data, "%s changed on disk" % rel
    shutil.rmtree(work, ignore_errors=True)


def test_meminfo_table_and_short_error_in_jupyterlab(playwright):
    """In JupyterLab (dark theme): ``m.meminfo()`` shows as two tables (/proc/meminfo's lines,
    /sys/kernel/mm/hugepages/) in the theme's colours, and an error raised inside hgmviz shows
    its message first, the user's line, and no frame of the package."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    work = workdir("hgmviz-lab-outputs-", notebooks=[])
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                               "display_name": "Python 3 (ipykernel)"}})
    nb.cells = [new_code_cell("import hgmviz as hv\nm = hv.Machine(nr_hugepages={2 << 20: 4})\n"
                              "p = m.spawn()\nm.meminfo()"),
                new_code_cell("p.munmap(1, 4096)")]
    nbformat.write(nb, str(work / "outputs.ipynb"))
    lab_settings(work, "dark")
    token = secrets.token_hex(16)
    srv = start_lab(work, token)
    ctx = launch_browser(playwright, work / "chromium", width=1366, height=900)
    with served(srv, ctx):
        page = lab_open(ctx, srv, token, "outputs.ipynb")
        page.wait_for_selector(".jp-OutputArea-output[data-mime-type="
                               "'application/vnd.jupyter.stderr']", timeout=90000)
        out = page.evaluate("""() => {
            const t = document.querySelector('.hgmviz-meminfo');
            const err = document.querySelector(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']");
            return {tables: t ? t.querySelectorAll('table').length : 0,
                    text: t ? t.innerText : '', color: getComputedStyle(t.querySelector('td'))
                    .color, err: err ? err.innerText : ''}; }""")
        path = Path(tempfile.mkdtemp(prefix="hgmviz-browser-")) / "lab-outputs-dark.png"
        page.screenshot(path=str(path))
        print("outputs: %s; screenshot: %s" % (out, path))
        assert out["tables"] == 2
        assert "HugePages_Free:" in out["text"] and "2048 kB" in out["text"]
        assert "hugepages-2048kB/" in out["text"]
        assert out["color"] != "rgb(0, 0, 0)"            # the dark theme's text colour applies
        lines = out["err"].strip().splitlines()
        assert lines[0] == "OSError: EINVAL: munmap: addr 0x1 is not page aligned", lines
        assert lines[1].strip() == "Cell In[2], line 1" and lines[2].strip() == "p.munmap(1, 4096)"
        assert len(lines) == 4 and "mmap.py" not in out["err"]
    shutil.rmtree(work, ignore_errors=True)


# every diagram a notebook drew: the smallest text as shown (font size x the drawing's scale
# on screen) and whether the drawing ends beyond its output area (cut off)
NOTEBOOK_SVG_JS = """
async () => {
  const out = [];
  for (const img of document.querySelectorAll('.jp-OutputArea-output img')) {
    if (!/svg/.test(img.src)) continue;            // JupyterLab shows an SVG output as an <img>
    const svg = new DOMParser().parseFromString(await (await fetch(img.src)).text(),
                                                 'image/svg+xml').documentElement;
    const vb = svg.viewBox.baseVal;
    const sizes = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim())
      .map(t => parseFloat(t.getAttribute('font-size')));
    const area = img.closest('.jp-OutputArea-output').getBoundingClientRect();
    const r = img.getBoundingClientRect();
    // beyond the output area, which does not scroll: the rest of the drawing is hidden
    let cut = false;
    for (let e = img.parentElement; e && !cut; e = e.parentElement) {
      const b = e.getBoundingClientRect(), ox = getComputedStyle(e).overflowX;
      if (ox !== 'visible' && r.right > b.right + 1 && e.scrollWidth <= e.clientWidth + 1)
        cut = true;
      if (ox === 'auto' || ox === 'scroll') break;  // a scrolling box shows the rest
      if (e.classList.contains('jp-OutputArea')) break;
    }
    const box = img.closest('.jp-OutputArea-output');
    out.push({px: sizes.length ? Math.min(...sizes) * r.width / vb.width : null,
              width: Math.round(r.width), natural: img.naturalWidth, area: Math.round(area.width),
              cut: cut || (r.right > area.right + 1 &&
                           getComputedStyle(box).overflowX === 'visible'),
              scrolls: box.scrollWidth > box.clientWidth + 1});
  }
  return out;
}
"""


@pytest.mark.parametrize("chapter", ["00-tour.md", "01-page-tables.md", "04-fork.md",
                                     "09-collapse-and-outcome.md"])
def test_notebook_diagrams_fit_beside_the_file_browser(playwright, chapter):
    """A 1400 px window with JupyterLab's file browser open: no diagram a chapter draws is cut
    off (one wider than the output scrolls sideways: chapter 4's fork, chapter 9's three
    schemes) and its text stays >= 11 px as shown (not shrunk to fit)."""
    work = workdir("hgmviz-lab-diagrams-", notebooks=[])
    for rel in ("notebooks/" + chapter, "notebooks/jupytext.toml"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, work / rel)
    lab_settings(work)
    token = secrets.token_hex(16)
    srv = start_lab(work, token)
    ctx = launch_browser(playwright, work / "chromium", width=1400, height=900)
    with served(srv, ctx):
        page = lab_open(ctx, srv, token, "notebooks/" + chapter)
        page.wait_for_function("""() => { const p = document.querySelectorAll(
            '.jp-Notebook .jp-CodeCell .jp-InputPrompt'); return p.length &&
            /\\[\\d+\\]/.test(p[p.length - 1].textContent) &&
            document.body.innerText.includes('| Idle'); }""", timeout=300000)
        page.wait_for_timeout(1000)
        found = page.evaluate(NOTEBOOK_SVG_JS)
        print("%s: %s" % (chapter, found))
        page.evaluate("""() => { const i = [...document.querySelectorAll(
            '.jp-OutputArea-output img')].pop(); i.scrollIntoView(); }""")
        page.wait_for_timeout(500)
        screenshot(page, "lab-diagrams-%s.png" % chapter[:2])
        assert found, "no diagram found"
        assert not [d for d in found if d["cut"]], found
        small = [d for d in found if d["px"] is None or d["px"] < MIN_TEXT_PX - 0.05]
        assert not small, small
    shutil.rmtree(work, ignore_errors=True)
