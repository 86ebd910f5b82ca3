"""Layer 4: the scenario file format — a session as plain data (TOML), validated with line
numbers; reading (:func:`parse_scenario`, :func:`read_scenario`) and writing
(:func:`dump_scenario`, :func:`save_session`).  Replaying a scenario is
:func:`hgmviz.session.session_from_scenario`; the shipped scenarios are
:mod:`hgmviz.scenarios`.

A scenario is a header and a list of steps; it drives the explorer, the tests, the notebooks
and the explainer.  Files are read with :mod:`tomllib` and written by the small writer below;
nothing is ever evaluated or unpickled.  ::

    format = 1
    title = "A 2 MiB hugetlb page on mainline"
    description = "Fault, fork, munmap, close."
    geometry = "x86_64"            # x86_64 | x86_64-5level | toy
    kernel = "6.2"                 # "6.2" (page cache holds 1 ref), "6.18", any "X.Y"
    nr_hugepages = { "2 MiB" = 8 }
    schemes = ["mainline"]         # one machine per scheme, stepped together
    guard = "none"                 # none | int_max_half | sign | sign_posted
    errors = "proposed"            # proposed | v2
    hvo = false
    count_at = "alloc"             # alloc | set   (optional)
    lookup_first = true            # (optional)
    watch = [["f", 0], ["f", "2 MiB"]]   # (file label, byte offset): folios to show

    [[step]]
    op = "Spawn"
    proc = "p"

    [[step]]
    op = "Touch"
    proc = "p"
    addr = ["a", "8 KiB"]          # a mapping label, [label, offset] or an integer address
    narration = "The first touch faults the hugepage in."
    expect = "ok"                  # or an errno name, SIGBUS, SIGSEGV, userfault, EAGAIN,
                                   # or per scheme: { mainline = "EINVAL", per_piece = "ok" }

Sizes (``length``, ``size``, ``offset``, ``hstate``, ``piece`` and offsets inside
addresses) are integers or strings such as ``"4 KiB"``, ``"2M"``, ``"1 GiB"`` (binary units).
``op`` is one of :data:`hgmviz.ops.OPERATIONS`; every other key of a step is a field of
that operation (:mod:`hgmviz.ops.records`, checked by the field's kind), except ``narration``
and ``expect``.  A UTF-8 byte-order mark at the start is ignored.

Every problem is reported as :class:`ScenarioError` (a ``ValueError``) whose message starts
with ``FILE:LINE:`` and names the step, the field and what is allowed; ``.line``, ``.field``,
``.step`` and ``.path`` carry the same.  Loading a malformed file changes nothing.
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from typing import Optional

from .geometry import get_geometry, get_kernel_profile
from .ops import OPERATIONS, InvalidOperation, Labels
from .ops.fields import _Check, kind_of
from .schemes import SCHEMES
from .units import format_size as _format_size
from .units import parse_size

__all__ = ["ScenarioError", "Scenario", "ScenarioStep", "parse_scenario", "read_scenario",
           "dump_scenario", "session_text", "save_session", "parse_size", "format_size",
           "HEADER_KEYS", "STEP_KEYS", "STATUSES", "FORMAT", "MAX_BYTES"]

FORMAT = 1

#: Header keys, in the order the writer writes them.
HEADER_KEYS = ("format", "title", "description", "geometry", "kernel", "nr_hugepages",
               "schemes", "guard", "errors", "hvo", "count_at", "lookup_first", "watch")
#: Keys of a step besides the operation's own fields.
STEP_KEYS = ("op", "narration", "expect")
GUARD_CHOICES = ("none", "int_max_half", "sign", "sign_posted")
GEOMETRY_CHOICES = ("x86_64", "x86_64-5level", "toy")
#: What ``expect`` may name: the statuses of :class:`hgmviz.ops.Outcome`.
STATUSES = ("ok", "SIGBUS", "SIGSEGV", "userfault", "EAGAIN", "hung", "skipped") + tuple(
    sorted(set(_errno.errorcode.values())))


class ScenarioError(ValueError):
    """A malformed scenario: ``FILE:LINE: message`` (``line`` None when unknown)."""

    def __init__(self, message: str, path: str = "<string>", line: Optional[int] = None,
                 field: Optional[str] = None, step: Optional[int] = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.step = step
        self.reason = message
        super().__init__("%s:%s: %s" % (self.path, line if line is not None else "?", message))


@dataclass(frozen=True)
class ScenarioStep:
    op: object
    narration: str = ""
    expect: Optional[object] = None     # None (ok), a status, or {scheme: status}
    line: Optional[int] = None

    def expected(self, scheme: str) -> str:
        if self.expect is None:
            return "ok"
        if isinstance(self.expect, str):
            return self.expect
        return self.expect.get(scheme, "ok")


@dataclass(frozen=True)
class Scenario:
    title: str
    description: str
    config: dict            # Machine keyword arguments (without the scheme)
    schemes: tuple
    watch: tuple            # ((file label, offset), ...)
    steps: tuple            # ScenarioStep, ...
    path: str = "<string>"
    lines: dict = field(default_factory=dict, compare=False, repr=False)


def format_size(n: int) -> str:
    """The size as :func:`parse_size` reads it back: ``"2 MiB"``, or the integer."""
    return _format_size(n, "toml")


# =========================================================================================
# Line numbers: a small scanner over the text (tomllib does not report positions)
# =========================================================================================
_KEY_RE = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")
_AOT_RE = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]")
_TABLE_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")


def _value_state(rest: str, depth: int):
    """Scan a value's text: returns (bracket depth after it, open multi-line delimiter)."""
    i = 0
    n = len(rest)
    while i < n:
        c = rest[i]
        if c == "#":
            break
        if rest.startswith('"""', i) or rest.startswith("'''", i):
            d = rest[i:i + 3]
            j = rest.find(d, i + 3)
            if j < 0:
                return depth, d
            i = j + 3
            continue
        if c == '"':
            i += 1
            while i < n and rest[i] != '"':
                i += 2 if rest[i] == "\\" else 1
            i += 1
            continue
        if c == "'":
            j = rest.find("'", i + 1)
            i = n if j < 0 else j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth, None


def _scan_lines(text: str) -> dict:
    """``{"header": {key: line}, "tables": {name: line}, "steps": [(line, {key: line})]}``."""
    header, tables, steps = {}, {}, []
    current = header
    ml = None          # open multi-line string delimiter
    depth = 0          # open brackets of a multi-line array / inline table
    for no, line in enumerate(text.splitlines(), 1):
        if ml is not None:
            j = line.find(ml)
            if j < 0:
                continue
            ml = None
            depth, ml = _value_state(line[j + 3:], depth)
            continue
        if depth > 0:
            depth, ml = _value_state(line, depth)
            continue
        m = _AOT_RE.match(line)
        if m:
            if m.group(1) == "step":
                keys = {}
                steps.append((no, keys))
                current = keys
            else:
                tables.setdefault(m.group(1), no)
                current = {}
            continue
        m = _TABLE_RE.match(line)
        if m:
            tables.setdefault(m.group(1), no)
            current = {}
            continue
        m = _KEY_RE.match(line)
        if m:
            key = m.group(1).strip("\"'")
            current.setdefault(key, no)
            depth, ml = _value_state(line[m.end():], 0)
    return {"header": header, "tables": tables, "steps": steps}


# =========================================================================================
# Reading and validating
# =========================================================================================
class _Reader:
    def __init__(self, text: str, path: str):
        self.text = text
        self.path = path
        self.lines = _scan_lines(text)

    def err(self, msg, line=None, field=None, step=None):
        raise ScenarioError(msg, self.path, line, field, step)

    def hline(self, key):
        return self.lines["header"].get(key) or self.lines["tables"].get(key)

    def sline(self, i, key=None):
        steps = self.lines["steps"]
        if i < len(steps):
            line, keys = steps[i]
            if key is not None and key in keys:
                return keys[key]
            return line
        return self.lines["header"].get("step")


def _choice(r, key, value, allowed):
    if value not in allowed:
        r.err("header: %s = %r is not allowed; allowed: %s"
              % (key, value, ", ".join(repr(a) for a in allowed)), r.hline(key), key)
    return value


def _typed(r, key, value, typ, what):
    if isinstance(value, bool) and typ is not bool or not isinstance(value, typ):
        r.err("header: %s must be %s, not %r" % (key, what, value), r.hline(key), key)
    return value


def _parse_header(r: _Reader, data: dict):
    for key in data:
        if key not in HEADER_KEYS and key != "step":
            r.err("unknown header key %r; allowed: %s, and [[step]] tables"
                  % (key, ", ".join(HEADER_KEYS)), r.hline(key), key)
    if "format" in data:
        fmt = _typed(r, "format", data["format"], int, "an integer")
        if fmt != FORMAT:
            r.err("header: format = %d is not supported; this hgmviz reads format %d"
                  % (fmt, FORMAT), r.hline("format"), "format")
    if "title" not in data:
        r.err("header: title is missing (a one-line string naming the scenario)", 1, "title")
    title = _typed(r, "title", data["title"], str, "a string")
    desc = _typed(r, "description", data.get("description", ""), str, "a string")
    geometry = _choice(r, "geometry", data.get("geometry", "x86_64"), GEOMETRY_CHOICES)
    g = get_geometry(geometry)
    config = {"geometry": geometry}
    kernel = _typed(r, "kernel", data.get("kernel", "6.2"), str, "a string such as \"6.2\"")
    try:
        get_kernel_profile(kernel)
    except ValueError as e:
        r.err("header: kernel: %s" % e, r.hline("kernel"), "kernel")
    config["kernel"] = kernel
    nr = data.get("nr_hugepages", {})
    if not isinstance(nr, dict):
        r.err("header: nr_hugepages must be a table such as { \"2 MiB\" = 8 }, not %r" % (nr,),
              r.hline("nr_hugepages"), "nr_hugepages")
    pool = {}
    sizes = [h.size for h in g.hstates]
    for k, v in nr.items():
        try:
            size = parse_size(k)
        except ValueError as e:
            r.err("header: nr_hugepages: %s" % e, r.hline("nr_hugepages"), "nr_hugepages")
        if size not in sizes:
            r.err("header: nr_hugepages: %s is not a hugepage size of the %s geometry; "
                  "allowed: %s" % (k, g.name, ", ".join('"%s"' % format_size(s) for s in sizes)),
                  r.hline("nr_hugepages"), "nr_hugepages")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            r.err("header: nr_hugepages[%r] must be an integer >= 0, not %r" % (k, v),
                  r.hline("nr_hugepages"), "nr_hugepages")
        pool[size] = v
    config["nr_hugepages"] = pool
    schemes = data.get("schemes", ["mainline"])
    if isinstance(schemes, str):
        schemes = [schemes]
    if not isinstance(schemes, list) or not schemes:
        r.err("header: schemes must be a non-empty list of scheme names; allowed: %s"
              % ", ".join(SCHEMES), r.hline("schemes"), "schemes")
    for s in schemes:
        _choice(r, "schemes", s, tuple(SCHEMES))
    if len(set(schemes)) != len(schemes):
        r.err("header: schemes repeats a scheme: %r" % (schemes,), r.hline("schemes"), "schemes")
    guard = _choice(r, "guard", data.get("guard", "none"), GUARD_CHOICES)
    config["guard"] = None if guard == "none" else guard
    config["errors"] = _choice(r, "errors", data.get("errors", "proposed"), ("proposed", "v2"))
    config["hvo"] = _typed(r, "hvo", data.get("hvo", False), bool, "true or false")
    if "count_at" in data:
        config["count_at"] = _choice(r, "count_at", data["count_at"], ("alloc", "set"))
    if "lookup_first" in data:
        config["lookup_first"] = _typed(r, "lookup_first", data["lookup_first"], bool,
                                        "true or false")
    watch = data.get("watch", [])
    if not isinstance(watch, list):
        r.err("header: watch must be a list of [file label, offset] pairs", r.hline("watch"),
              "watch")
    pairs = []
    for w in watch:
        if not (isinstance(w, list) and len(w) == 2 and isinstance(w[0], str) and w[0]):
            r.err("header: watch entry %r must be [file label, offset], e.g. [\"f\", 0]" % (w,),
                  r.hline("watch"), "watch")
        off = w[1]
        try:
            off = parse_size(off) if isinstance(off, str) else off
        except ValueError as e:
            r.err("header: watch: %s" % e, r.hline("watch"), "watch")
        if isinstance(off, bool) or not isinstance(off, int) or off < 0:
            r.err("header: watch offset must be an integer >= 0 or a size, not %r" % (w[1],),
                  r.hline("watch"), "watch")
        pairs.append((w[0], off))
    return title, desc, config, tuple(schemes), tuple(pairs), g


def _parse_expect(r, i, value, schemes):
    line = r.sline(i, "expect")

    def one(v, where):
        if v not in STATUSES:
            r.err("step %d: expect%s = %r is not an outcome; allowed: ok, an errno name "
                  "(EINVAL, EEXIST, ENOMEM, ...), SIGBUS, SIGSEGV, userfault, EAGAIN, hung, skipped"
                  % (i + 1, where, v), line, "expect", i + 1)
        return v

    if isinstance(value, str):
        return None if value == "ok" else one(value, "")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k not in schemes:
                r.err("step %d: expect names scheme %r, which the header does not list; "
                      "schemes: %s" % (i + 1, k, ", ".join(schemes)), line, "expect", i + 1)
            out[k] = one(v, "[%s]" % k)
        return out
    r.err("step %d: expect must be an outcome such as \"EEXIST\" or a table "
          "{ scheme = outcome }, not %r" % (i + 1, value), line, "expect", i + 1)


def _parse_steps(r: _Reader, raw, schemes, g):
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        r.err("'step' must be an array of tables: write each step as a [[step]] table",
              r.hline("step"), "step")
    labels = Labels()
    steps = []
    for i, d in enumerate(raw):
        where = r.sline(i)
        if "op" not in d:
            r.err("step %d: 'op' is missing; allowed: %s" % (i + 1, ", ".join(OPERATIONS)),
                  where, "op", i + 1)
        name = d["op"]
        cls = OPERATIONS.get(name) if isinstance(name, str) else None
        if cls is None:
            r.err("step %d: unknown op %r; allowed: %s" % (i + 1, name, ", ".join(OPERATIONS)),
                  r.sline(i, "op"), "op", i + 1)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k in d:
            if k not in fields and k not in STEP_KEYS:
                r.err("step %d (%s): unknown field %r; %s takes: %s (and narration, expect)"
                      % (i + 1, name, k, name, ", ".join(fields)), r.sline(i, k), k, i + 1)
        missing = [f for f in fields.values() if f.name not in d
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            r.err("step %d (%s): field %r is missing; %s takes: %s"
                  % (i + 1, name, missing[0].name, name, ", ".join(
                      f.name + ("" if f.default is dataclasses.MISSING else " (optional)")
                      for f in fields.values())), where, missing[0].name, i + 1)
        narration = d.get("narration", "")
        if not isinstance(narration, str):
            r.err("step %d: narration must be a string, not %r" % (i + 1, narration),
                  r.sline(i, "narration"), "narration", i + 1)
        expect = _parse_expect(r, i, d["expect"], schemes) if "expect" in d else None
        args, defines = {}, []
        for fname, f in fields.items():
            if fname not in d:
                continue
            kind = kind_of(f)
            try:
                args[fname] = kind.check(_Check(name, fname, labels, True), d[fname])
            except InvalidOperation as e:
                r.err("step %d (%s): field %r: %s" % (i + 1, name, fname,
                                                      str(e).split(": ", 1)[-1]),
                      r.sline(i, fname), fname, i + 1)
            if kind.defines:
                defines.append((kind.defines, args[fname]))
        try:
            op = cls(**args)
        except (TypeError, ValueError) as e:       # pragma: no cover - fields checked above
            r.err("step %d (%s): %s" % (i + 1, name, e), where, None, i + 1)
        # a step expected to fail under every scheme defines no label
        fails_everywhere = expect is not None and all(
            (expect if isinstance(expect, str) else expect.get(s, "ok")) != "ok" for s in schemes)
        if not fails_everywhere:
            for lk, lbl in defines:
                labels.kind_set(lk).add(lbl)
        steps.append(ScenarioStep(op, narration, expect, where))
    return tuple(steps), labels


#: The deepest nesting of arrays and inline tables a scenario may use (real ones use 2;
#: tomllib recurses once per level, so a thousand levels would be a RecursionError).
MAX_NESTING = 32
#: The largest scenario file read (real ones are a few KiB).
MAX_BYTES = 4 << 20


def _too_deep(text: str, limit: int = MAX_NESTING) -> Optional[int]:
    """The line where arrays / inline tables nest deeper than ``limit`` (None: they do not).
    Brackets inside strings and comments do not count."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in "\"'":
            delim = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else ch
            j = i + len(delim)
            while j < n and not text.startswith(delim, j):
                if text[j] == "\\" and ch == '"':
                    j += 1
                elif text[j] == "\n" and len(delim) == 1:
                    break                           # an unterminated string: tomllib says so
                j += 1
            line += text.count("\n", i, j)
            i = j + len(delim)
            continue
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def parse_scenario(text, path: str = "<string>") -> Scenario:
    """Parse and validate a scenario (text or bytes); raise :class:`ScenarioError`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text[:e.start].count(b"\n") + 1
            raise ScenarioError("not UTF-8 text (byte %d)" % e.start, path, line) from None
    if text.startswith("\ufeff"):           # a UTF-8 byte-order mark, as some editors write
        text = text[1:]
    deep = _too_deep(text)
    if deep is not None:
        raise ScenarioError("arrays or inline tables nested more than %d levels deep; a "
                            "scenario needs at most 2" % MAX_NESTING, path, deep)
    try:
        data = tomllib.loads(text)
    except RecursionError:                                   # pragma: no cover - see _too_deep
        raise ScenarioError("nested too deeply to read", path, None) from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        if m is None and "end of document" in msg:
            line = text.count("\n") + 1
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        col = (", column %s" % m.group(2)) if m else ""
        raise ScenarioError("TOML syntax error%s: %s" % (col, reason), path, line) from None
    r = _Reader(text, path)
    title, desc, config, schemes, watch, g = _parse_header(r, data)
    steps, labels = _parse_steps(r, data.get("step", []), schemes, g)
    for lbl, _ in watch:
        if lbl not in labels.files:
            r.err("header: watch names file label %r, which no step defines; file labels: %s"
                  % (lbl, ", ".join(sorted(labels.files)) or "none"), r.hline("watch"), "watch")
    return Scenario(title, desc, config, schemes, watch, steps, str(path), r.lines)


def read_scenario(path) -> Scenario:
    """Read and validate a scenario file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise ScenarioError("cannot read: %s" % e.strerror, path) from None
    if len(raw) > MAX_BYTES:
        raise ScenarioError("larger than %d MiB: not a scenario file" % (MAX_BYTES >> 20), path)
    return parse_scenario(raw, path)


# =========================================================================================
# Writing
# =========================================================================================
def _escape(s: str, multiline: bool) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\n" if multiline else "\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append("\\u%04x" % o)
        elif 0xD800 <= o <= 0xDFFF:     # a lone surrogate: no TOML (nor UTF-8) can hold it;
            out.append("\\\\u%04x" % o)  # kept visible as the text \udXXX
        else:
            out.append(ch)
    return "".join(out)


def _toml_str(s: str) -> str:
    """A TOML basic string."""
    return '"' + _escape(s, False) + '"'


def _toml_text(s: str) -> str:
    """A multi-line basic string when ``s`` has line breaks, else a basic string."""
    if "\n" not in s:
        return _toml_str(s)
    return '"""\n' + _escape(s, True) + '"""'


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_str(k)



def _value(v, size=False, address=False) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if size and v > 0 and v % 1024 == 0:
            return _toml_str(format_size(v))
        if address:
            return "%#x" % v
        return str(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x, size=size) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (_toml_key(str(k)), _value(x))
                                for k, x in v.items()) + " }"
    raise TypeError("cannot write %r to a scenario file" % (v,))


def _op_lines(op) -> list:
    name = type(op).__name__
    lines = ["op = %s" % _toml_str(name)]
    for f in dataclasses.fields(op):
        v = getattr(op, f.name)
        if f.default is not dataclasses.MISSING and v == f.default and v is not None:
            continue
        if v is None:
            continue
        kind = kind_of(f).name
        if kind == "addr":
            if isinstance(v, (tuple, list)):
                text = "[%s, %s]" % (_toml_str(v[0]), _value(int(v[1]), size=True))
            else:
                text = _value(v, address=not isinstance(v, str))
        elif kind == "optsize":
            text = _value(v, address=True)
        else:
            text = _value(v, size=kind in ("size", "hstate"))
        lines.append("%s = %s" % (f.name, text))
    return lines


def dump_scenario(title, description, config, schemes, watch, steps) -> str:
    """Scenario text.  ``steps``: ``[(op, narration, expect)]`` (expect None, a status or
    ``{scheme: status}``)."""
    g = config.get("geometry", "x86_64")
    gname = g if isinstance(g, str) else g.name
    try:
        named = get_geometry(gname)
    except ValueError:
        named = None
    if named is None or named is not get_geometry(g):
        raise ValueError("geometry %r is not one of the named geometries (%s); a scenario "
                         "file can only name one" % (gname, ", ".join(GEOMETRY_CHOICES)))
    gname = named.name
    kernel = config.get("kernel", "6.2")
    kernel = kernel if isinstance(kernel, str) else kernel.label
    out = ["# hgmviz scenario (TOML): read with hgmviz.scenarios.read_scenario / Session.load",
           "format = %d" % FORMAT,
           "title = %s" % _toml_str(title),
           "description = %s" % _toml_text(description),
           "geometry = %s" % _toml_str(gname),
           "kernel = %s" % _toml_str(kernel),
           "nr_hugepages = %s" % ("{ " + ", ".join(
               "%s = %d" % (_toml_str(format_size(int(k))), int(v))
               for k, v in sorted((config.get("nr_hugepages") or {}).items())) + " }"
                                  if config.get("nr_hugepages") else "{}"),
           "schemes = %s" % _value(list(schemes)),
           "guard = %s" % _toml_str(config.get("guard") or "none"),
           "errors = %s" % _toml_str(config.get("errors", "proposed")),
           "hvo = %s" % _value(bool(config.get("hvo", False)))]
    out.append("count_at = %s" % _toml_str(config.get("count_at", "alloc")))
    out.append("lookup_first = %s" % _value(bool(config.get("lookup_first", True))))
    out.append("watch = [%s]" % ", ".join("[%s, %s]" % (_toml_str(l), _value(int(o), size=True))
                                          for l, o in watch))
    for op, narration, expect in steps:
        out.append("")
        out.append("[[step]]")
        out += _op_lines(op)
        if expect is not None:
            out.append("expect = %s" % _value(expect))
        if narration:
            out.append("narration = %s" % _toml_text(narration))
    return "\n".join(out) + "\n"


def _session_expect(step):
    st = step.statuses
    vals = set(st.values())
    if vals == {"ok"}:
        return None
    if len(vals) == 1:
        return vals.pop()
    return {k: v for k, v in st.items() if v != "ok"}


def session_text(session) -> str:
    return dump_scenario(session.title, session.description, session.config, session.schemes,
                         session.watch, [(st.op, st.narration, _session_expect(st))
                                         for st in session.steps])


def save_session(session, path):
    """Write ``session`` (its header and the steps up to the current position) to ``path``,
    atomically (a temporary file renamed over it)."""
    text = session_text(session)
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".hgmviz-", suffix=".toml", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


