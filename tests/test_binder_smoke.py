"""Binder smoke test: build the environment the way repo2docker does, then run the tour.

1. A copy of the repository (tracked and untracked-but-not-ignored files, as a fresh clone
   plus the work in progress) in a temporary folder.
2. A fresh virtual environment with the Python of ``binder/runtime.txt``, filled only by
   ``pip install -r binder/requirements.txt`` run from the copy's root (repo2docker ignores
   pyproject.toml when binder/ exists; the requirements end with ``.``, hgmviz itself).
   The packages of ``binder/apt.txt`` must be installed on the machine (repo2docker would
   apt-get them; CI's scripts/_install.sh does).
3. ``binder/postBuild`` with that environment first on PATH, run from the copy's root with
   HOME set to it, as repo2docker runs it (its REPO_DIR is the user's HOME); it fills the
   numba cache in ``$HOME``.
   postBuild also installs JupyterLab's settings (scripts/jupyterlab/overrides.json); voila's
   server extension is enabled (the README's Voila link on Binder opens /voila/render/...).
4. The tour, executed through ``binder/start`` (which points NUMBA_CACHE_DIR at that cache):
   every cell runs, the first code cell — and every other — takes under 2 s, and nothing
   is compiled: the cache postBuild left covers every kernel the tour calls, for the copy
   of hgmviz the notebook kernel imports.

``test_lab_check_without_chromium_apt_or_root`` is the other fresh-install smoke test: ``bash
scripts/lab.sh --check`` on a copy of the repository with no root, apt-get, sudo or Chromium (how:
tests/test_setup.py, whose helpers it uses).

The Binder test downloads the pinned packages (about 700 MiB) and takes about 90 s. It is skipped only
when pip cannot reach a package index; with CI=true it never skips: any failure fails.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_setup import IS_ROOT, _out, _run_lab, _tmp   # tests/ is on sys.path under pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
CELL_LIMIT = 2.0     # seconds, for the first code cell (and every other) after start

NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
    r"Could not fetch URL|ConnectTimeout|ReadTimeout|ConnectionError|"
    r"No matching distribution found|Could not find a version that satisfies", re.I)

# Runs inside the Binder environment, under binder/start: execute the tour with nbclient
# (installed with jupyterlab) and report, as JSON, every code cell's time and the numba
# cache files before and after.
DRIVER = textwrap.dedent("""
    import json, os, sys, time
    from datetime import datetime
    import nbformat
    from nbclient import NotebookClient

    def cache_files():
        root = os.environ["NUMBA_CACHE_DIR"]
        return sorted(os.path.relpath(os.path.join(d, f), root)
                      for d, _, fs in os.walk(root) for f in fs)

    path = sys.argv[1]
    if path.endswith(".md"):        # a Markdown notebook (jupytext), as JupyterLab opens it
        import jupytext
        nb = jupytext.read(path)
    else:
        nb = nbformat.read(path, as_version=4)
    before = cache_files()
    client = NotebookClient(nb, kernel_name="python3", timeout=300, record_timing=True,
                            resources={"metadata": {"path": os.path.dirname(path)}})
    error = None
    try:
        client.execute()
    except Exception as e:          # report it; the test fails on it
        error = "%s: %s" % (type(e).__name__, e)
    cells = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        t = c.metadata.get("execution", {})
        start, end = t.get("iopub.execute_input"), t.get("shell.execute_reply")
        secs = None
        if start and end:
            secs = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                    - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
        cells.append({"source": c.source, "seconds": secs,
                      "errors": [o.get("ename") for o in c.get("outputs", [])
                                 if o.get("output_type") == "error"]})
    print("@@RESULT@@" + json.dumps({"error": error, "cells": cells, "cache_before": before,
                                      "cache_after": cache_files(),
                                      "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR")}))
""")


def _unavailable(why: str):
    """Skip outside CI; fail in CI, where everything this test needs must be present."""
    if IN_CI:
        pytest.fail("binder smoke test cannot run in CI: " + why, pytrace=False)
    pytest.skip(why)


def _run(cmd, *, env, cwd, timeout, what):
    try:
        return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail("%s timed out after %d s:\n%s" % (what, timeout, (e.stdout or "")[-3000:]),
                    pytrace=False)


def _tail(proc, n=4000) -> str:
    return ((proc.stdout or "") + (proc.stderr or ""))[-n:]


def _python_for_runtime() -> str:
    """An interpreter matching binder/runtime.txt (``python-3.11``)."""
    text = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(\d+)\.(\d+)", text)
    assert m, "binder/runtime.txt should read python-X.Y, not %r" % text
    want = (int(m.group(1)), int(m.group(2)))
    if sys.version_info[:2] == want:
        return sys.executable
    exe = shutil.which("python%d.%d" % want)
    if exe is None:
        _unavailable("no Python %d.%d (binder/runtime.txt) on this machine" % want)
    return exe


def _check_apt_packages():
    pkgs = [line.strip() for line in (BINDER / "apt.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    if not pkgs:
        return
    if shutil.which("dpkg-query") is None:
        _unavailable("dpkg-query not found: cannot check binder/apt.txt packages %s" % pkgs)
    missing = []
    for pkg in pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                           text=True)
        if "install ok installed" not in r.stdout:
            missing.append(pkg)
    if missing:
        _unavailable("binder/apt.txt packages not installed: %s" % missing)


def _copy_repo(dest: Path):
    """What a clone would hold, plus untracked work: git's file list, else a filtered copy."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = None
    if files is None:
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", ".numba_cache", "__pycache__", "*.egg-info", "build", "dist",
            ".pytest_cache", ".hypothesis", ".ipynb_checkpoints"))
        return
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _clean_env(home: Path, venv: Path) -> dict:
    """The environment of a fresh Binder user: this test's numba cache, venv and Jupyter
    settings removed; the new venv first on PATH; a new HOME."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_", "JUPYTER_", "PYTHON", "IPYTHON", "PIP_REQUIRE"))
           and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["HOME"] = str(home)
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_binder_builds_and_runs_the_tour_warm(tmp_path):
    _check_apt_packages()
    python = _python_for_runtime()
    repo, venv = tmp_path / "repo", tmp_path / "venv"
    home = repo                        # repo2docker: the repository is copied into $HOME
    repo.mkdir()
    _copy_repo(repo)
    env = _clean_env(home, venv)

    r = _run([python, "-m", "venv", str(venv)], env=env, cwd=repo, timeout=300,
             what="python -m venv")
    if r.returncode:
        _unavailable("cannot create a virtual environment:\n" + _tail(r))

    # repo2docker: pip install -r binder/requirements.txt, from the repository root
    r = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
              "--progress-bar", "off", "-r", "binder/requirements.txt"],
             env=env, cwd=repo, timeout=1500, what="pip install -r binder/requirements.txt")
    if r.returncode:
        if not IN_CI and NETWORK_ERRORS.search(_tail(r, 20000)):
            pytest.skip("no package index reachable:\n" + _tail(r, 1500))
        pytest.fail("pip install -r binder/requirements.txt failed:\n" + _tail(r), pytrace=False)

    r = _run(["bash", str(repo / "binder" / "postBuild")], env=env, cwd=repo, timeout=900,
             what="binder/postBuild")
    assert r.returncode == 0, "binder/postBuild failed:\n" + _tail(r)

    # what postBuild set up for JupyterLab and Voila in the Binder environment
    overrides = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                     "import sys; print(sys.prefix)"], capture_output=True,
                                    text=True, check=True).stdout.strip(),
                     "share", "jupyter", "lab", "settings", "overrides.json")
    assert overrides.is_file(), "binder/postBuild did not install JupyterLab's overrides.json"
    assert json.loads(overrides.read_text()) == json.loads(
        (repo / "scripts" / "jupyterlab" / "overrides.json").read_text())
    r = _run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], env=env, cwd=repo,
             timeout=120, what="jupyter server extension list")
    assert re.search(r"voila\.server_extension\b.*enabled", _tail(r, 20000)), (
        "voila's server extension is not enabled in the Binder environment:\n" + _tail(r))

    driver = tmp_path / "run_tour.py"
    driver.write_text(DRIVER)
    tour = next(p for p in (repo / "notebooks" / "00-tour.md", repo / "notebooks" / "00-tour.ipynb")
                if p.exists())
    r = _run(["bash", str(repo / "binder" / "start"), str(venv / "bin" / "python"), str(driver),
              str(tour)], env=env, cwd=repo, timeout=600, what="the tour under binder/start")
    marker = [line for line in r.stdout.splitlines() if line.startswith("@@RESULT@@")]
    assert r.returncode == 0 and marker, "running the tour failed:\n" + _tail(r)
    result = json.loads(marker[-1][len("@@RESULT@@"):])

    assert result["numba_cache_dir"] == str(home / ".hgmviz-numba-cache"), \
        "binder/start must point NUMBA_CACHE_DIR at the cache postBuild filled"
    assert result["error"] is None, "the tour failed on Binder:\n" + result["error"]
    cells = result["cells"]
    assert cells and all(not c["errors"] for c in cells)
    assert result["cache_before"], "postBuild left no numba cache in $HOME"

    compiled = sorted(set(result["cache_after"]) - set(result["cache_before"]))
    if compiled:
        folders = sorted({f.split(os.sep)[0] for f in compiled})
        warmed = sorted({f.split(os.sep)[0] for f in result["cache_before"]})
        pytest.fail("the tour compiled %d cache file(s) that postBuild had not left, in %s "
                    "(postBuild filled %s). numba keys its cache by the source file's path: "
                    "if the folders differ, postBuild's warmup imported another copy of "
                    "hgmviz than the notebook kernel does (the repository's, from the "
                    "current directory, instead of the installed one); if they are the same, "
                    "hgmviz.warmup misses a kernel. First files: %s"
                    % (len(compiled), folders, warmed, compiled[:5]), pytrace=False)
    for i, cell in enumerate(cells):
        label = "the first code cell" if i == 0 else "code cell %d" % i
        assert cell["seconds"] is not None, "no timing recorded for %s" % label
        assert cell["seconds"] < CELL_LIMIT, (
            "%s took %.2f s right after a Binder start (limit %.1f s):\n%s"
            % (label, cell["seconds"], CELL_LIMIT, cell["source"]))


def test_lab_check_without_chromium_apt_or_root():
    if not Path("/usr/bin/python3").exists():
        pytest.fail("this test uses Debian's /usr/bin/python3 (>= 3.11)", pytrace=False)
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot must be installed (scripts/test.sh installs it)", pytrace=False)
    work = _tmp()
    try:
        proc, repo = _run_lab(work, wheelhouse=True)
        out = _out(proc)
        assert proc.returncode == 0, "bash scripts/lab.sh --check failed:\n" + out[-6000:]
        assert not re.search(r"\[hgmviz setup\] (apt-get|need root)", out), out[-3000:]
        assert "installing Python packages into .venv: pip install -e '.'" in out
        assert re.search(r"jupyter lab prints http://127\.0\.0\.1:\d+/lab/tree/my-notebooks/"
                         r"00-tour\.(md|ipynb)\?token=", out), out[-3000:]
        assert "the server serves the tour and docs/glossary.md" in out
        assert "OK: `bash scripts/lab.sh` is ready" in out
        # the student's copy of the chapters (git-ignored: the status below stays clean)
        assert (repo / "my-notebooks" / "00-tour.md").read_bytes() == \
            (repo / "notebooks" / "00-tour.md").read_bytes()
        venv_python = repo / ".venv" / "bin" / "python"
        assert venv_python.exists()
        if IS_ROOT:
            # the whole run was the user nobody's: everything it made belongs to nobody
            assert venv_python.parent.stat().st_uid == pwd.getpwnam("nobody").pw_uid
            assert "--allow-root" not in out
        status = subprocess.run(["git", "-c", "safe.directory=*", "status", "--porcelain"],
                                cwd=repo, capture_output=True, text=True, check=True).stdout
        assert status == "", "lab.sh --check changed or left files git sees:\n" + status
    finally:
        shutil.rmtree(work, ignore_errors=True)
