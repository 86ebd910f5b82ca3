"""The set-up commands on a machine like a student's: `bash scripts/lab.sh` needs only Python >= 3.11
and Graphviz — no root, no apt-get, no sudo, no Chromium.

The install-and-run test (``test_lab_check_without_chromium_apt_or_root``) lives in
tests/test_binder_smoke.py beside the Binder one: both install a fresh environment and take minutes,
and the fast suite leaves that file out. It uses the helpers here: it copies the repository (tracked and untracked-but-not-ignored files, as a fresh clone
plus the work in progress) into a temporary folder, commits it there, and runs
``bash scripts/lab.sh --check`` with

- a PATH of symlinks to /usr/bin and /bin minus ``apt``, ``apt-get``, ``sudo`` and ``chromium``,
  and no other folder (no pyenv, no /usr/local/bin): the Python is Debian's ``/usr/bin/python3``;
- when the test runs as root (CI does): in a new mount namespace (``unshare -m``) where
  ``/usr/bin/chromium`` is a bind-mounted /dev/null (not executable), as the user ``nobody``
  (``setpriv``), with a fresh HOME and the copy owned by that user;
- a clean environment (no virtualenv, PYTHONPATH, NUMBA_* or JUPYTER_* of the test process).

It checks that the command succeeds (a fresh ``.venv`` is installed from the package index, the
tour runs headless, JupyterLab starts, prints a URL that opens the tour and serves the glossary),
that it never ran apt-get, and that ``git status`` in the copy is clean afterwards.

Time: a student's pip asks the package index about every package (about 100), which takes a minute or
more here whether or not the files are cached. This test takes the same pinned files from a local
wheelhouse instead (``/var/tmp/hgmviz-test-setup-wheels``, filled once per pyproject.toml +
constraints by ``pip download`` from the index; ``PIP_NO_INDEX=1``, ``PIP_FIND_LINKS``): pip
resolves and installs exactly what it would from the index, without the network round trips. That
the pinned set resolves from the index itself is what tests/test_binder_smoke.py checks. Everything
else (the venv, the numba cache, JupyterLab's runtime files) starts empty.

The other tests run the command with ``dot`` or Python >= 3.11 missing from PATH: it must stop
before creating ``.venv``, saying how to get what is missing.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
HIDDEN = {"apt", "apt-get", "apt-cache", "sudo", "chromium", "chromium-browser"}
IS_ROOT = os.geteuid() == 0
# where the user `nobody` can read it (not under /root), kept between runs
WHEELHOUSE = Path("/var/tmp/hgmviz-test-setup-wheels")


def _copy_repo(dest: Path) -> None:
    """What a clone would hold, plus untracked work in progress; committed in a fresh repository
    so that `git status` can say afterwards whether the command changed a tracked file."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    for rel in (f for f in out.decode().split("\0") if f):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run(git + cmd, cwd=dest, check=True, capture_output=True)


def _bin_dir(dest: Path, also_hidden=()) -> Path:
    """A PATH folder of symlinks to /usr/bin and /bin, minus HIDDEN and the names matching the
    regular expressions ``also_hidden``."""
    dest.mkdir()
    for folder in ("/usr/bin", "/bin"):
        for entry in sorted(os.listdir(folder)):
            if entry in HIDDEN or any(re.fullmatch(p, entry) for p in also_hidden):
                continue
            if not (dest / entry).is_symlink():
                (dest / entry).symlink_to(os.path.join(folder, entry))
    return dest


def _clean_env(home: Path, path: Path) -> dict:
    env = {"PATH": str(path), "HOME": str(home), "LANG": "C.UTF-8", "USER": "student",
           "TMPDIR": str(home / "tmp"), "PYTHONUNBUFFERED": "1"}
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def _wheelhouse() -> Path:
    """The pinned packages' files for Debian's python3, downloaded from the index once per
    pyproject.toml + constraints (a stamp file says which), plus the build backend hgmviz's
    editable install needs."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()
                         + (ROOT / "requirements" / "constraints.txt").read_bytes()).hexdigest()
    stamp = WHEELHOUSE / (".complete-" + key[:16])
    if not stamp.exists():
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        WHEELHOUSE.chmod(0o755)
        r = subprocess.run(["/usr/bin/python3", "-m", "pip", "download", "-q",
                            "--disable-pip-version-check", "-d", str(WHEELHOUSE),
                            "-c", str(ROOT / "requirements" / "constraints.txt"), str(ROOT),
                            "setuptools>=68", "wheel"],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, "pip download into the wheelhouse failed:\n" + r.stderr[-3000:]
        stamp.touch()
    return WHEELHOUSE


def _tmp() -> Path:
    # not under pytest's tmp_path: that is private to root, and the user `nobody` needs to reach it
    work = Path(tempfile.mkdtemp(prefix="hgmviz-setup-test-", dir="/tmp"))
    work.chmod(0o755)
    return work


def _chown(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for d, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(d, n), uid, gid)


def _run_lab(work: Path, *, also_hidden=(), args=("--check",), timeout=900, wheelhouse=False):
    """Run `bash scripts/lab.sh ARGS` in a copy of the repository, as described in the module
    docstring. Returns (CompletedProcess, repo)."""
    repo, home = work / "repo", work / "home"
    repo.mkdir()
    home.mkdir()
    _copy_repo(repo)
    bindir = _bin_dir(work / "bin", also_hidden)
    env = _clean_env(home, bindir)
    if wheelhouse:
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(_wheelhouse()))
    cmd = ["bash", "scripts/lab.sh", *args]
    if IS_ROOT:
        nobody = pwd.getpwnam("nobody")
        _chown(work, nobody.pw_uid, nobody.pw_gid)
        inner = ("mount --bind /dev/null /usr/bin/chromium 2>/dev/null || true; "
                 "exec setpriv --reuid=%d --regid=%d --clear-groups --inh-caps=-all "
                 "--bounding-set=-all env -i %s %s"
                 % (nobody.pw_uid, nobody.pw_gid,
                    " ".join("%s=%s" % kv for kv in env.items()), " ".join(cmd)))
        # mount a private /dev/null over chromium only inside this namespace
        full = ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", inner]
        proc = subprocess.run(full, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=timeout)
    else:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=timeout)
    return proc, repo


def _out(proc) -> str:
    return (proc.stdout or "") + (proc.stderr or "")


def test_lab_without_dot_says_how_to_get_it():
    work = _tmp()
    try:
        proc, repo = _run_lab(work, also_hidden={"dot"}, timeout=120)
        out = _out(proc)
        assert proc.returncode == 1, out
        assert "Graphviz's `dot` was not found on PATH" in out
        for line in _readme_graphviz_commands():
            assert line in out, "README's %r is not in lab.sh's message:\n%s" % (line, out)
        assert not (repo / ".venv").exists(), "lab.sh created .venv before finding dot missing"
        assert "apt-get update" not in out          # told, never run
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_lab_without_python_311_says_so():
    work = _tmp()
    try:
        proc, repo = _run_lab(work, also_hidden={r"python.*", r"pydoc.*", r"pip.*"}, timeout=120)
        out = _out(proc)
        assert proc.returncode == 1, out
        assert "Python >= 3.11 not found on PATH" in out and "HGMVIZ_PYTHON" in out, out
        assert not (repo / ".venv").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _readme_graphviz_commands() -> list[str]:
    """The install commands of the README's Graphviz table (`| system | command |` rows)."""
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| ([^|]+?) \| `([^`]+)` \|$", text, re.M)
    cmds = [cmd for system, cmd in rows if "graphviz" in cmd]
    assert len(cmds) >= 5, "README.md should have a table of Graphviz install commands per system"
    return cmds


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^bash scripts/test\.sh\b", readme, re.M), "README must give the test command"
    assert re.search(r"^bash scripts/test\.sh\b", ci, re.M), ".ci/run must run scripts/test.sh"
    assert re.search(r"^bash scripts/lab\.sh\b", readme, re.M)
    # the README says exactly when apt-get runs: only the test command, only for these packages
    assert "apt-get" in readme and "never runs apt-get" in readme


def test_binder_installs_the_pinned_set_with_voila():
    req = (ROOT / "binder" / "requirements.txt").read_text().split("\n")
    lines = [ln.split("#")[0].strip() for ln in req]
    lines = [ln for ln in lines if ln]
    assert "-c ../requirements/constraints.txt" in lines, lines
    assert lines[-1] == ".", "binder/requirements.txt must end with `.` (hgmviz itself)"
    constraints = (ROOT / "requirements" / "constraints.txt").read_text()
    for pkg in ("voila", "jupyterlab", "ipywidgets", "jupyterlab_widgets", "numba"):
        assert re.search(r"^%s==" % pkg, constraints, re.M | re.I), pkg
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert '"voila' in deps, "voila must be a dependency of hgmviz itself (Binder installs `.`)"
    if any(ROOT.glob("notebooks/*.md")):
        assert '"jupytext' in deps, "Markdown notebooks need jupytext wherever hgmviz is installed"
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "set -e" in post and "overrides.json" in post
    start = (ROOT / "binder" / "start").read_text().strip().splitlines()
    assert start[-1] == 'exec "$@"'


def _not_modelled_section() -> str:
    text = (ROOT / "README.md").read_text()
    assert "\n## Not modelled\n" in text
    return text.split("\n## Not modelled\n", 1)[1].split("\n## ", 1)[0]


def test_readme_not_modelled_list_is_true():
    """Each kernel feature the README lists as not modelled is indeed absent from the API (when one
    is added, this fails until the README's list drops it)."""
    import hgmviz as hv
    section = _not_modelled_section()
    absent = {
        "`mremap`": lambda: hasattr(hv.Process, "mremap"),
        "`mprotect`": lambda: hasattr(hv.Process, "mprotect"),
        "`UFFDIO_COPY`": lambda: hasattr(hv.Process, "uffdio_copy"),
        "`UFFDIO_ZEROPAGE`": lambda: hasattr(hv.Process, "uffdio_zeropage"),
        "truncation": lambda: hasattr(hv.File, "ftruncate") or hasattr(hv.File, "truncate"),
        "hole punching": lambda: hasattr(hv, "FALLOC_FL_PUNCH_HOLE"),
    }
    for name in (k for k in absent if k in section):
        assert not absent[name](), (
            "README.md lists %s under 'Not modelled', but hgmviz now has it" % name)
    if "`MAP_PRIVATE`" in section:
        m = hv.Machine(nr_hugepages={2 << 20: 2})
        f = m.memfd_create(size=2 << 20, hstate=2 << 20)
        with pytest.raises(hv.Unsupported):
            m.spawn().mmap(f, 2 << 20, shared=False)


# ------------------------------------------------------------------------------------------
# A student's edits to a chapter never block `git pull` (issue 14): lab.sh opens my-notebooks/
# ------------------------------------------------------------------------------------------
def _my_notebooks():
    import importlib.util
    spec = importlib.util.spec_from_file_location("hgmviz_my_notebooks",
                                                  ROOT / "scripts" / "_my_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t",
                           "-c", "init.defaultBranch=main", "-c", "safe.directory=*", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout


def _course(tmp: Path) -> Path:
    """A course repository: the real notebooks/ and .gitignore, committed."""
    origin = tmp / "origin"
    (origin / "notebooks").mkdir(parents=True)
    shutil.copytree(ROOT / "notebooks" / "solutions", origin / "notebooks" / "solutions")
    for p in (ROOT / "notebooks").iterdir():
        if p.is_file():
            shutil.copyfile(p, origin / "notebooks" / p.name)
    shutil.copyfile(ROOT / ".gitignore", origin / ".gitignore")
    _git(origin, "init", "-q")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "course")
    return origin


def test_lab_opens_the_students_git_ignored_copy():
    lab = (ROOT / "scripts" / "lab.sh").read_text()
    assert 'chapters=my-notebooks' in lab and 'python scripts/_my_notebooks.py "$HGMVIZ_ROOT"' in lab
    assert 'for t in "$chapters/00-tour.md"' in lab and '--edit-chapters' in lab
    assert _git(ROOT, "check-ignore", "my-notebooks/00-tour.md").strip() == "my-notebooks/00-tour.md"
    readme = (ROOT / "README.md").read_text()
    assert "my-notebooks/" in readme and "--edit-chapters" in readme and "git pull" in readme


def test_first_run_copies_every_chapter_and_changes_no_tracked_file(tmp_path):
    mine = _my_notebooks()
    origin = _course(tmp_path)
    msgs = mine.sync(origin)
    src = sorted(str(p.relative_to(origin / "notebooks")) for p in (origin / "notebooks").rglob("*")
                 if p.is_file() and p.suffix in (".md", ".ipynb", ".toml"))
    got = sorted(str(p.relative_to(origin / "my-notebooks")) for p in
                 (origin / "my-notebooks").rglob("*") if p.is_file() and p.name != mine.RECORD)
    assert got == src and len(msgs) == len(src) and "nav.py" not in got
    for rel in src:
        assert (origin / "my-notebooks" / rel).read_bytes() == (origin / "notebooks" / rel).read_bytes()
    assert _git(origin, "status", "--porcelain") == ""            # ignored, nothing tracked changed
    assert mine.sync(origin) == []                                  # a second run: nothing to do


def test_students_edit_survives_git_pull_and_untouched_chapters_update(tmp_path):
    mine = _my_notebooks()
    origin = _course(tmp_path)
    clone = tmp_path / "student"
    _git(tmp_path, "clone", "-q", str(origin), str(clone))
    mine.sync(clone)
    edited = clone / "my-notebooks" / "03-guards-and-errors.md"
    edited.write_text(edited.read_text() + "\nmy answer: the folio stays locked\n")
    (clone / "my-notebooks" / "scratch.md").write_text("# my own notes\n")
    # the teacher changes two chapters and adds one, and pushes
    for rel in ("03-guards-and-errors.md", "04-fork.md"):
        p = origin / "notebooks" / rel
        p.write_text(p.read_text() + "\nA corrected sentence.\n")
    (origin / "notebooks" / "11-new.md").write_text("# new\n")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "teacher's fixes")
    _git(clone, "pull", "-q")                                       # applies: nothing tracked changed
    assert _git(clone, "status", "--porcelain") == ""
    msgs = mine.sync(clone)
    assert edited.read_text().endswith("my answer: the folio stays locked\n")   # kept
    assert "A corrected sentence." not in edited.read_text()
    assert (clone / "my-notebooks" / "04-fork.md").read_text().endswith("A corrected sentence.\n")
    assert (clone / "my-notebooks" / "11-new.md").read_text() == "# new\n"
    assert (clone / "my-notebooks" / "scratch.md").read_text() == "# my own notes\n"
    assert sorted(m.split()[0] + " " + m.split()[-1 if m.startswith("copied") else 1]
                  for m in msgs) == ["copied my-notebooks/11-new.md",
                                     "kept your", "updated my-notebooks/04-fork.md"]
    assert any("my-notebooks/03-guards-and-errors.md" in m and "notebooks/03-guards-and-errors.md has "
               "a newer version" in m for m in msgs)
    # the student takes the new version by deleting the copy
    edited.unlink()
    assert mine.sync(clone) == ["copied my-notebooks/03-guards-and-errors.md"]
    assert edited.read_text().endswith("A corrected sentence.\n")
