"""Layer 5: text that is safe to show — labels, titles and narrations come from users'
scenario files (any valid TOML string), so before they reach ``dot``, a terminal or an HTML
page, characters that would break or hijack the output are made visible instead.

:func:`printable` replaces C0 / C1 control characters (NUL, ESC — the start of every
terminal escape sequence —, BEL, DEL, ...), lone surrogates (which no UTF-8 output can
encode), the non-characters U+FFFE / U+FFFF and the bidirectional-override controls (which
reorder what a reader sees) by their escape, ``\\x1b``, ``\\ud800``, ``\\u202e``.  Line
breaks and tabs are kept unless ``keep=""``.
"""
from __future__ import annotations

import re

__all__ = ["printable"]

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
                     "\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_UNSAFE_NL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
                        "\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escape(m) -> str:
    o = ord(m.group(0))
    return "\\x%02x" % o if o < 0x100 else "\\u%04x" % o


def printable(text, keep: str = "\n\t") -> str:
    """``text`` (made a str) with every unsafe character escaped (see the module); ``keep``:
    ``"\\n\\t"`` (default) keeps line breaks and tabs, ``""`` escapes them too."""
    text = str(text)
    pat = _UNSAFE if keep else _UNSAFE_NL
    return pat.sub(_escape, text) if pat.search(text) else text
