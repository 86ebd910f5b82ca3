"""The project's one numba policy: ``njit(cache=True)`` where a cache can be written, in a cache
folder keyed by the package's sources.

numba silently ignores a read-only ``NUMBA_CACHE_DIR`` and fails to import a ``cache=True``
module when no location is writable at all ("cannot cache function ... no locator
available").  Here the cache is used when some location is writable and dropped otherwise,
so ``import hgmviz`` always works (toolchain-notes: numba cache).

numba decides whether a cached function is still valid from its *own* source file only: a
kernel in ``core/ranges.py`` that inlined a helper of ``core/pool.py`` keeps its old machine code
after ``pool.py`` changes (seen this session: a stale ``install_range`` after a ``git pull``-like
edit).  So the cache lives in ``<location>/hgmviz-<digest of every .py file of the package>``:
any change of the sources gives a fresh folder, the same sources reuse it (Binder's postBuild
fills it once).  Old folders are left for the user to delete (another checkout may use them).
"""
from __future__ import annotations

import hashlib
import os
import tempfile

import numba

__all__ = ["njit", "CACHE", "CACHE_DIR", "source_key"]

_ROOT = os.path.dirname(os.path.abspath(__file__))


def source_key(root: str = _ROOT) -> str:
    """A short digest of every ``.py`` file under ``root`` (paths and contents, sorted)."""
    h = hashlib.sha1()
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()[:16]


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _cache_dir() -> str | None:
    """The first writable of ``$NUMBA_CACHE_DIR``, the package's ``__pycache__`` and
    ``~/.cache/numba``, with the ``hgmviz-<source key>`` folder below it; None: no cache."""
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return None
    d = os.environ.get("NUMBA_CACHE_DIR")
    bases = [d] if d else [os.path.join(_ROOT, "__pycache__"),
                           os.path.join(os.path.expanduser("~"), ".cache", "numba")]
    key = "hgmviz-" + source_key()
    for base in bases:
        path = os.path.join(base, key)
        if _writable(path):
            return path
    return None


CACHE_DIR = _cache_dir()
CACHE = CACHE_DIR is not None
if CACHE:
    # read by numba when each cached function is declared (its cache locator), so this applies
    # to every @njit below, all of which import this module first
    numba.config.CACHE_DIR = CACHE_DIR


def njit(*args, **kwargs):
    """``numba.njit`` with ``cache`` on when a cache location is writable, ``nogil`` on."""
    kwargs.setdefault("cache", CACHE)
    kwargs.setdefault("nogil", True)
    return numba.njit(*args, **kwargs)
