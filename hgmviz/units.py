"""Layer 0: sizes as people write them — the one parser and the one formatter.

``parse_size("2 MiB")`` → 2097152 (binary units, as the kernel's ``memparse``);
``format_size(2097152)`` → ``"2 MiB"``.  Every layer formats sizes through
:func:`format_size`; its ``style`` picks the form a reader needs:

``"text"`` (default)
    for people: the largest binary unit that divides the size, thousands grouped
    (``"16,380 KiB"``), bytes otherwise (``"3 B"``).
``"toml"``
    what :func:`parse_size` reads back (scenario files): ``"2 MiB"``, else the bare integer.
``"short"``
    compact, for one-line step descriptions: ``"2M"``, ``"4K"``, ``"0"``, else hex.
"""
from __future__ import annotations

import re

__all__ = ["parse_size", "format_size", "SIZE_STYLES"]

SIZE_STYLES = ("text", "toml", "short")

_UNITS = {"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20,
          "g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40}
_SIZE_RE = re.compile(r"^\s*(0x[0-9a-fA-F_]+|[0-9][0-9_]*)\s*([A-Za-z]*)\s*$")
_STEPS = (("GiB", 30), ("MiB", 20), ("KiB", 10))


def parse_size(text: str) -> int:
    """``"2 MiB"``/``"2M"``/``"2MB"`` → 2097152 (binary units, as the kernel's ``memparse``),
    ``"4096"`` → 4096, ``"0x1000"`` → 4096.  ValueError naming what is allowed otherwise."""
    m = _SIZE_RE.match(text) if isinstance(text, str) else None
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError("%r is not a size; write an integer or a size such as \"4 KiB\", "
                         "\"2 MiB\", \"1 GiB\"" % (text,))
    num = int(m.group(1).replace("_", ""), 0)
    return num << _UNITS[m.group(2).lower()]


def format_size(n: int, style: str = "text") -> str:
    """``n`` bytes as text in ``style`` (see the module docstring)."""
    n = int(n)
    if style == "short":
        if n == 0:
            return "0"
        for unit, sh in _STEPS:
            if n % (1 << sh) == 0:
                return "%d%s" % (n >> sh, unit[0])
        return "%#x" % n
    for unit, sh in _STEPS:
        if n >= 1 << sh and n % (1 << sh) == 0:
            if style == "toml":
                return "%d %s" % (n >> sh, unit)
            return "%s %s" % (format(n >> sh, ","), unit)
    if style == "toml":
        return str(n)
    if style != "text":
        raise ValueError("style must be one of %s, not %r" % (", ".join(SIZE_STYLES), style))
    return "%s B" % format(n, ",")
