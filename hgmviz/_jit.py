"""The project's one numba policy: ``njit(cache=True)`` where a cache can be written.

numba silently ignores a read-only ``NUMBA_CACHE_DIR`` and fails to import a ``cache=True``
module when no location is writable at all ("cannot cache function ... no locator
available").  Here the cache is used when some location is writable and dropped otherwise,
so ``import hgmviz`` always works (toolchain-notes: numba cache).
"""
from __future__ import annotations

import os
import tempfile

import numba

__all__ = ["njit", "CACHE"]


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _cache_possible() -> bool:
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return False
    d = os.environ.get("NUMBA_CACHE_DIR")
    if d:
        return _writable(d)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    if _writable(here):
        return True
    user = os.path.join(os.path.expanduser("~"), ".cache", "numba")
    if _writable(user):
        return True
    return False


CACHE = _cache_possible()


def njit(*args, **kwargs):
    """``numba.njit`` with ``cache`` on when a cache location is writable, ``nogil`` on."""
    kwargs.setdefault("cache", CACHE)
    kwargs.setdefault("nogil", True)
    return numba.njit(*args, **kwargs)
