"""Every notebook under notebooks/ runs top to bottom without an error, is committed output-free, and
saving it after the run (as JupyterLab's jupytext does) leaves the committed file byte-identical.

Notebooks run headless with nbclient (kernel ``python3``, the interpreter running pytest), in their own
folder, one fresh kernel each. nbformat and nbclient are imported inside the functions: importing them
costs about 2 s (jsonschema builds a grammar), which a run that deselects these tests should not pay.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
CELL_TIMEOUT = 600  # seconds per cell
KERNEL_NAME = "python3"


def find_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """All notebooks under ``folder`` (MyST ``.md`` text notebooks and ``.ipynb``), recursively,
    without Jupyter's checkpoints."""
    return sorted(
        p for p in [*folder.rglob("*.md"), *folder.rglob("*.ipynb")]
        if ".ipynb_checkpoints" not in p.relative_to(folder).parts
    )


def read_notebook(path: Path):
    """The notebook at ``path`` as an nbformat v4 NotebookNode (jupytext reads both formats)."""
    import jupytext

    return jupytext.read(path)


def save_as_jupyterlab_would(nb, path: Path, workdir: Path) -> bytes:
    """Save the executed ``nb`` through jupytext's contents manager (what JupyterLab uses) into a copy
    of ``path`` under ``workdir`` with the same jupytext.toml, and return the bytes written."""
    import asyncio
    import shutil

    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

    rel = path.relative_to(NOTEBOOK_DIR)
    (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(NOTEBOOK_DIR / "jupytext.toml", workdir / "jupytext.toml")
    shutil.copy(path, workdir / rel)
    cm = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(root_dir=str(workdir))

    async def roundtrip():
        model = await cm.get(str(rel), type="notebook")            # what opening it loads
        model["content"].cells = nb.cells                          # ... and what running it made
        model["content"].metadata.update(nb.metadata)
        await cm.save({"type": "notebook", "format": "json", "content": model["content"]}, str(rel))

    asyncio.run(roundtrip())
    return (workdir / rel).read_bytes()


def execute_notebook(path: Path):
    """Run ``path`` in a fresh kernel from its own folder; raise CellExecutionError on the first error."""
    from nbclient import NotebookClient

    nb = read_notebook(path)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(path.parent)}},
        allow_errors=False,
    )
    client.execute()
    return nb


def output_problems(nb) -> list[str]:
    """What makes a notebook not output-free (empty when it is clean)."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i}: has {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i}: execution_count is {cell.execution_count}, not None")
    if "widgets" in nb.metadata:
        problems.append("notebook metadata holds saved widget state")
    return problems


NOTEBOOKS = find_notebooks()
IDS = [str(p.relative_to(NOTEBOOK_DIR)) for p in NOTEBOOKS]


# Loaded by every notebook kernel the tests start (an IPython startup file): the notebooks run as a
# student without root runs them. Chapter 10's run_check() then predicts with the simulator and
# leaves the live half "(not run)", instead of changing /proc/sys/vm/nr_hugepages on the machine that
# runs the tests (tests/test_kernelcheck_live.py is where the live check is tested, as root).
NO_ROOT_STARTUP = """\
import os
os.geteuid = lambda: 65534        # tests/test_notebooks.py: run the notebooks as a non-root user would
"""


@pytest.fixture(autouse=True)
def _kernel_uses_this_python(monkeypatch, tmp_path_factory):
    # The python3 kernelspec that ipykernel installs into a venv starts "python" from PATH: put this
    # interpreter's folder first so the kernel imports the same hgmviz as the tests, even unactivated.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    ipython_dir = tmp_path_factory.mktemp("ipython")
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-no-root.py").write_text(NO_ROOT_STARTUP)
    monkeypatch.setenv("IPYTHONDIR", str(ipython_dir))


def test_tour_exists():
    assert (NOTEBOOK_DIR / "00-tour.md") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_output_free(path):
    import nbformat

    nb = read_notebook(path)
    nbformat.validate(nb)
    problems = output_problems(nb)
    assert not problems, f"{path.name} must be committed without outputs:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path, tmp_path):
    from nbclient.exceptions import CellExecutionError

    try:
        nb = execute_notebook(path)
    except CellExecutionError as e:  # nbclient's message already shows the cell and the traceback
        pytest.fail(f"{path.name} failed:\n{e}", pytrace=False)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any(c.outputs for c in nb.cells if c.cell_type == "code"), "the run printed nothing"
    if path.name.startswith("10-"):                 # chapter 10 ran without root: nothing touched
        text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert "(not run)" in text, "chapter 10 ran the live kernel check in the notebook test"
    if path.suffix == ".md":
        assert save_as_jupyterlab_would(nb, path, tmp_path) == path.read_bytes(), (
            f"{path.name}: saving after a run changes the committed text notebook")
