"""`bash scripts/lab.sh --check`: check the lab set-up end to end, then stop (no long-lived server).

Run by scripts/lab.sh inside .venv, from the repository root, with the arguments
``TOUR_PATH`` (relative to the root) and the jupyter-lab arguments lab.sh would start the
server with. Checks, in order, and stops at the first failure (exit status 1):

1. Graphviz's ``dot`` runs;
2. the Python packages the notebooks need import (hgmviz, ipywidgets, the widget lab extension,
   voila; jupytext when the tour is a Markdown notebook) and JupyterLab's settings overrides are
   installed;
3. the tour runs headless, every cell (in memory: nothing is written back);
4. JupyterLab starts with lab.sh's arguments, the URL it prints opens the tour, and the server
   serves the tour and the glossary the notebooks link to (``docs/glossary.md``); then it is
   stopped.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path.cwd()


def say(msg: str) -> None:
    print("[hgmviz check] " + msg, flush=True)


def fail(msg: str) -> "None":
    print("[hgmviz check] FAILED: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def check_dot() -> None:
    dot = shutil.which("dot")
    if dot is None:
        fail("Graphviz's dot is not on PATH")
    r = subprocess.run([dot, "-V"], capture_output=True, text=True)
    if r.returncode:
        fail("`dot -V` failed: " + r.stderr)
    say("dot: " + (r.stderr or r.stdout).strip())


def check_packages(tour: Path) -> None:
    import importlib.metadata as md
    need = ["hgmviz", "ipywidgets", "jupyterlab_widgets", "jupyterlab", "ipykernel", "voila",
            "numba", "graphviz"]
    if tour.suffix == ".md":
        need.append("jupytext")
    versions = []
    for name in need:
        try:
            versions.append("%s %s" % (name, md.version(name)))
        except md.PackageNotFoundError:
            fail("the Python package %s is not installed in %s" % (name, sys.prefix))
    say("packages: " + ", ".join(versions))
    # the prebuilt JupyterLab extensions the notebooks need (no build step)
    exts = ["@jupyter-widgets/jupyterlab-manager"]
    if tour.suffix == ".md":
        exts.append("jupyterlab-jupytext")
    for ext in exts:
        if not Path(sys.prefix, "share", "jupyter", "labextensions", ext, "package.json").is_file():
            fail("the JupyterLab extension %s is not installed in %s" % (ext, sys.prefix))
    overrides = Path(sys.prefix, "share", "jupyter", "lab", "settings", "overrides.json")
    if not overrides.is_file():
        fail("JupyterLab's settings overrides are missing: %s" % overrides)
    json.loads(overrides.read_text())


def read_notebook(path: Path):
    if path.suffix == ".md":
        import jupytext
        return jupytext.read(path)
    import nbformat
    return nbformat.read(path, as_version=4)


def check_tour_runs(tour: Path) -> None:
    from nbclient import NotebookClient
    nb = read_notebook(tour)
    t0 = time.monotonic()
    client = NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(tour.parent)}})
    try:
        client.execute()
    except Exception as e:          # the cell's error, as the student would see it
        fail("the tour did not run: %s: %s" % (type(e).__name__, str(e)[-2000:]))
    n = sum(1 for c in nb.cells if c.cell_type == "code")
    say("the tour ran headless: %d code cells in %.1f s" % (n, time.monotonic() - t0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def check_server(tour: Path, lab_args: list[str]) -> None:
    port, token = free_port(), os.urandom(12).hex()
    work = Path(tempfile.mkdtemp(prefix="hgmviz-lab-check-"))
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(work / "runtime"))
    cmd = ["jupyter", "lab", *lab_args, "--no-browser", "--port=%d" % port,
           "--ServerApp.port_retries=0", "--IdentityProvider.token=" + token]
    log_path = work / "lab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        printed = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                fail("jupyter lab exited with status %s at start:\n%s"
                     % (proc.returncode, log_path.read_text()[-3000:]))
            m = re.search(r"(http://127\.0\.0\.1:%d/\S+)" % port, log_path.read_text())
            if m:
                printed = m.group(1)
                break
            time.sleep(0.3)
        if printed is None:
            fail("jupyter lab printed no URL in 90 s:\n" + log_path.read_text()[-3000:])
        want = "/lab/tree/" + tour.relative_to(ROOT).as_posix()
        if not printed.split("?")[0].endswith(want):
            fail("the URL jupyter lab prints should open the tour (%s), not %s" % (want, printed))
        say("jupyter lab prints " + printed.replace(token, "<token>"))
        # the printed URL hides a token given in the configuration: open its path with ours
        base = "http://127.0.0.1:%d" % port
        rel = tour.relative_to(ROOT).as_posix()
        status, body = get("%s%s?token=%s" % (base, want, token))
        if status != 200 or ('"treePath": "%s"' % rel) not in body:
            fail("GET %s answered HTTP %s without opening the tour (no treePath %s in the page)"
                 % (want, status, rel))
        for rel in (rel, "docs/glossary.md"):
            status, body = get("%s/api/contents/%s?content=0&token=%s" % (base, rel, token))
            if status != 200:
                fail("the server does not serve %s (HTTP %s): is it rooted at the repository?"
                     % (rel, status))
        say("the server serves the tour and docs/glossary.md")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> None:
    tour = (ROOT / argv[0]).resolve()
    lab_args = argv[1:]
    check_dot()
    check_packages(tour)
    check_tour_runs(tour)
    check_server(tour, lab_args)
    say("OK: `bash scripts/lab.sh` is ready (it opens %s)" % tour.relative_to(ROOT))


if __name__ == "__main__":
    main(sys.argv[1:])
