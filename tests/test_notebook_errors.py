"""hgmviz's errors in IPython and Jupyter: the message first, the user's own line, the frames
inside hgmviz hidden unless hv.verbose_errors() (issue 15)."""
import os
import re
import subprocess
import sys

import pytest

import hgmviz as hv
from hgmviz import notebook_errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSI = re.compile(r"\x1b\[[0-9;]*m")

SETUP = "import hgmviz as hv\nm = hv.Machine(nr_hugepages={2 << 20: 2})\np = m.spawn()"
BAD = "p.munmap(1, 4096)"
MESSAGE = "OSError: EINVAL: munmap: addr 0x1 is not page aligned"


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.setdefault("NUMBA_CACHE_DIR", os.path.join(ROOT, ".numba_cache"))
    return env


def test_not_installed_outside_ipython():
    out = subprocess.run([sys.executable, "-c", "import hgmviz, sys; "
                          "print('IPython' in sys.modules, hgmviz._notebook_errors.install())"],
                         capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.split() == ["False", "False"]


def test_verbose_errors_setting():
    assert hv.verbose_errors is notebook_errors.verbose_errors
    was = hv.verbose_errors(True)
    try:
        assert hv.verbose_errors(True) is True
        with pytest.raises(TypeError, match="True or False"):
            hv.verbose_errors("yes")
        assert hv.verbose_errors(False) is True
    finally:
        hv.verbose_errors(was)


def test_short_lines_of_an_error_raised_in_hgmviz_and_of_one_that_is_not():
    m = hv.Machine(nr_hugepages={2 << 20: 2})
    p = m.spawn()
    try:
        p.munmap(1, 4096)
    except OSError:
        lines = notebook_errors.short_lines(*sys.exc_info(), color=False)
    assert lines[0] == MESSAGE
    assert lines[1].startswith("  File %s, line " % __file__)
    assert lines[2] == "    p.munmap(1, 4096)"
    assert re.fullmatch(r"\(raised in hgmviz\.mm\.mmap\.check_page_range; \d+ frames inside "
                        r"hgmviz hidden: hv\.verbose_errors\(\) shows them\)", lines[3])
    try:
        {}["x"]
    except KeyError:
        assert notebook_errors.short_lines(*sys.exc_info()) is None


def test_ipython_shell():
    cells = [SETUP, BAD, "1/0", "hv.verbose_errors()", BAD]
    out = subprocess.run(["ipython", "--simple-prompt", "--colors=nocolor", "--no-banner"],
                         input="\n".join(cells) + "\n", capture_output=True, text=True,
                         env=_env(), cwd=ROOT, timeout=240)
    text = ANSI.sub("", out.stdout)
    short = text.split("In [4]:")[1].split("In [5]:")[0].strip().splitlines()
    assert short[0] == MESSAGE
    assert short[1:3] == ["  Cell In[4], line 1", "    " + BAD]
    assert short[3].startswith("(raised in hgmviz.mm.mmap.check_page_range;")
    assert len(short) == 4
    user = text.split("In [5]:")[1].split("In [6]:")[0]
    assert "ZeroDivisionError" in user and "Traceback" in user       # not ours: untouched
    verbose = text.split("In [7]:")[1]
    assert "Traceback (most recent call last)" in verbose
    assert "hgmviz/mm/mmap.py" in verbose and "check_page_range" in verbose


def test_notebook_error_output():
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in
                (SETUP, "x = 1\n" + BAD, "def mine():\n    raise ValueError('my own')\nmine()",
                 "hv.verbose_errors()", BAD)]
    # the kernel runs in the repository (``import hgmviz`` finds this checkout)
    NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": ROOT}}).execute()
    err = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert len(err) == 1 and err[0].ename == "OSError"
    shown = ANSI.sub("", "\n".join(err[0].traceback)).splitlines()
    assert shown[0] == MESSAGE
    assert shown[1] == "  Cell In[2], line 2" and shown[2] == "    " + BAD
    assert len(shown) == 4 and "mmap.py" not in "\n".join(shown)
    own = ANSI.sub("", "\n".join(nb.cells[2].outputs[0].traceback))
    assert "ValueError: my own" in own and "raise ValueError" in own       # the usual form
    full = ANSI.sub("", "\n".join(nb.cells[4].outputs[0].traceback))
    assert "hgmviz/mm/mmap.py" in full and "check_page_range" in full
