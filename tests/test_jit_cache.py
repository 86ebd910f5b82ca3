"""The numba cache folder is keyed by the package's sources (hgmviz/_jit.py): numba checks only a
function's own file, so a kernel that inlined a helper of another file would keep stale machine
code after that file changed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import hgmviz
from hgmviz import _jit

PKG = Path(hgmviz.__file__).parent


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "src" / "hgmviz"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_source_key_changes_with_any_source_file_and_only_then(tmp_path):
    pkg = _copy(tmp_path)
    k0 = _jit.source_key(str(pkg))
    assert k0 == _jit.source_key(str(PKG))                  # same sources, same key
    (pkg / "__pycache__").mkdir(exist_ok=True)
    (pkg / "__pycache__" / "x.py").write_text("junk")          # caches do not count
    (pkg / "notes.txt").write_text("not source")
    assert _jit.source_key(str(pkg)) == k0
    pool = pkg / "core" / "pool.py"
    pool.write_text(pool.read_text() + "\n# an edit of a helper other kernels inline\n")
    assert _jit.source_key(str(pkg)) != k0


def _cache_dir_in(pkg_parent: Path, cache: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(pkg_parent), NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_DISABLE_JIT", None)
    code = "import hgmviz._jit as j, numba; print(j.CACHE_DIR); print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=str(cache.parent)).stdout.split()
    assert out[0] == out[1], out                     # numba uses the keyed folder
    return out[0]


def test_an_edited_checkout_gets_a_fresh_cache_folder(tmp_path):
    pkg = _copy(tmp_path)
    cache = tmp_path / "cache"
    first = _cache_dir_in(pkg.parent, cache)
    assert Path(first).parent == cache and Path(first).name.startswith("hgmviz-")
    assert first == _cache_dir_in(pkg.parent, cache)        # unchanged sources: reused
    ranges = pkg / "core" / "pool.py"
    ranges.write_text(ranges.read_text() + "\n# edited\n")
    second = _cache_dir_in(pkg.parent, cache)
    assert second != first and Path(second).parent == cache


def test_cached_functions_are_written_to_the_keyed_folder(tmp_path):
    mod = tmp_path / "jitmod.py"
    mod.write_text(textwrap.dedent("""
        from hgmviz._jit import njit
        @njit
        def add(a, b):
            return a + b
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(PKG.parent)]),
               NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("NUMBA_DISABLE_JIT", None)
    code = "import jitmod, hgmviz._jit as j; print(jitmod.add(2, 3)); print(j.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=str(tmp_path)).stdout.split()
    assert out[0] == "5"
    files = [p.name for p in Path(out[1]).rglob("*") if p.is_file()]
    assert any(f.endswith(".nbi") for f in files) and any(f.endswith(".nbc") for f in files), files
