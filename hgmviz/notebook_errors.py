"""Layer 6: hgmviz's errors in IPython and Jupyter, message first.

The simulator's errors carry the whole explanation in their message (``EINVAL: UFFDIO_CONTINUE:
on a 2 MiB hugetlb VMA the range must be aligned to 2 MiB (mfill_atomic_hugetlb) ...``); the
frames inside the package that raised it are noise to a student.  ``import hgmviz`` inside
IPython (a notebook's kernel, the ``ipython`` shell) installs :func:`short_traceback` as the
shell's custom exception handler.  For an error raised inside hgmviz it shows::

    OSError: EINVAL: UFFDIO_CONTINUE: ...             <- the message first
      Cell In[3], line 2                              <- the user's own line
        p.uffdio_continue(a + 0x1000, 0x1000)
    (raised in hgmviz.mm.userfaultfd.uffdio_continue; 6 frames inside hgmviz hidden:
    hv.verbose_errors() shows them)

as an ordinary error output (nbclient and ``jupyter nbconvert --execute`` still stop there).
Any other error — raised in the user's own code, or in a callback of theirs that hgmviz called —
keeps IPython's usual traceback, and so does every error after ``hv.verbose_errors()``
(``hv.verbose_errors(False)`` turns the short form back on).  Nothing is installed outside
IPython, nor when the shell already has a custom exception handler of someone else's.
"""
from __future__ import annotations

import linecache
import os
import re
import sys

__all__ = ["verbose_errors", "install", "uninstall", "short_traceback", "short_lines"]

_PKG = os.path.dirname(os.path.abspath(__file__)) + os.sep
_ERRNO_PREFIX = re.compile(r"^\[Errno \d+\] ")
_state = {"verbose": False}
_RED, _GREEN, _RESET = "\x1b[0;31m", "\x1b[0;32m", "\x1b[0m"


def verbose_errors(on: bool = True) -> bool:
    """Show hgmviz's errors with every frame (``on=True``, IPython's usual traceback) or
    message first with the frames inside hgmviz hidden (``on=False``, the default).  Returns
    the previous setting."""
    if not isinstance(on, bool):
        raise TypeError("verbose_errors takes True or False, not %r" % (on,))
    was = _state["verbose"]
    _state["verbose"] = on
    return was


def _inside(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PKG) if filename else False


def _frames(tb) -> list:
    out = []
    while tb is not None:
        out.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    return out


def _is_user_file(shell, filename: str) -> bool:
    """A cell of this shell (or an ``<ipython-input-..>``): code the user typed."""
    cmap = getattr(getattr(shell, "compile", None), "_filename_map", {})
    return filename in cmap or filename.startswith("<ipython-input")


def short_lines(etype, value, tb, shell=None, color: bool = True):
    """The short form's lines (without newlines) for an error raised inside hgmviz, or None
    when the error is not hgmviz's (no frame inside the package, or user code ran after it)."""
    frames = _frames(tb)
    first = next((i for i, (f, _) in enumerate(frames) if _inside(f.f_code.co_filename)), None)
    if first is None:
        return None
    if any(_is_user_file(shell, f.f_code.co_filename) for f, _ in frames[first:]):
        return None                     # a callback of the user's raised it: not ours
    inner = [(f, n) for f, n in frames[first:] if _inside(f.f_code.co_filename)]
    deepest = inner[-1][0]
    rel = os.path.relpath(deepest.f_code.co_filename, os.path.dirname(_PKG.rstrip(os.sep)))
    module = rel[:-3].replace(os.sep, ".") if rel.endswith(".py") else rel
    red, green, reset = (_RED, _GREEN, _RESET) if color else ("",) * 3
    message = _ERRNO_PREFIX.sub("", str(value))
    lines = ["%s%s%s: %s" % (red, etype.__name__, reset, message)]
    if first > 0:
        frame, lineno = frames[first - 1]
        fn = frame.f_code.co_filename
        label = None
        fmt = getattr(getattr(shell, "compile", None), "format_code_name", None)
        if fmt is not None:
            named = fmt(fn)
            if named:
                label = "%s %s" % named
        where = "%s, line %d" % (label or "File %s" % fn, lineno)
        lines.append("  %s%s%s" % (green, where, reset))
        src = linecache.getline(fn, lineno, frame.f_globals).strip()
        if src:
            lines.append("    " + src)
    hidden = len(frames) - first
    # the hint in the theme's own text colour (ANSI cyan is faint on a light error background)
    lines.append("(raised in %s.%s; %d frame%s inside hgmviz hidden: hv.verbose_errors() "
                 "shows them)" % (module, deepest.f_code.co_name, hidden,
                                  "" if hidden == 1 else "s"))
    return lines


def short_traceback(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler (``InteractiveShell.set_custom_exc``): shows the
    short form of an error raised inside hgmviz, IPython's usual traceback otherwise."""
    colors = str(getattr(shell, "colors", "")).lower()
    lines = None if _state["verbose"] else short_lines(etype, value, tb, shell,
                                                         color=colors != "nocolor")
    if lines is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset,
                            running_compiled_code=True)
        return None
    stb = ["\n".join(lines)]
    shell._showtraceback(etype, value, stb)        # an error output, as IPython's own
    return stb


def _shell():
    ipy = sys.modules.get("IPython")
    if ipy is None:
        return None
    try:
        return ipy.get_ipython()
    except Exception:                                # noqa: BLE001 (a broken IPython: skip)
        return None


def install(shell=None) -> bool:
    """Install the handler in ``shell`` (default: the running IPython shell, if any).  Returns
    True when installed; False outside IPython or when another custom handler is there."""
    shell = shell or _shell()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    current = getattr(shell, "custom_exceptions", ())
    if current and not getattr(shell, "_hgmviz_short_errors", False):
        return False
    shell.set_custom_exc((Exception,), short_traceback)
    shell._hgmviz_short_errors = True
    return True


def uninstall(shell=None) -> bool:
    """Remove the handler :func:`install` put in ``shell``."""
    shell = shell or _shell()
    if shell is None or not getattr(shell, "_hgmviz_short_errors", False):
        return False
    shell.set_custom_exc((), None)
    shell._hgmviz_short_errors = False
    return True
