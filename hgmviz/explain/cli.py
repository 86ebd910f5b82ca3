"""Layer 6: the commands ``hgmviz explain`` and ``hgmviz scenarios``."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

from ..render import DotNotFound
from ..scenarios import ScenarioError, list_scenarios
from ..schemes import SCHEMES
from .html import to_html, to_svgs
from .model import (EXIT_NO_DOT, EXIT_OK, EXIT_SCENARIO, EXIT_USAGE, EXIT_WRITE, FORMATS,
                    WIDTH, _check_schemes, build_explainer, select_steps)
from .text import _wrap, to_text


def _generator() -> str:
    try:
        from importlib.metadata import version
        return "hgmviz %s" % version("hgmviz")
    except Exception:         # pragma: no cover - not installed (a source checkout)
        return "hgmviz"


def _write(path, text: str):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def _write_into(folder, name: str, text: str) -> str:
    """Write ``folder/name`` as a new file: a temporary file in ``folder`` renamed over the
    name, so a symlink (or a hard link) already at that name is replaced, never followed —
    its target is not overwritten.  Returns the path."""
    path = os.path.join(os.fspath(folder), name)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=os.fspath(folder))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# =========================================================================================
# The commands: hgmviz explain, hgmviz scenarios
# =========================================================================================
_EPILOG = """\
SCENARIO is a shipped scenario name (see `hgmviz scenarios`) or a path to a
scenario file (TOML; the format is described in hgmviz/scenarios/__init__.py).

formats:
  html   one self-contained page: inline SVG and CSS, no JavaScript, no external
         file or URL; opens offline in any browser (needs Graphviz's dot)
  text   plain text within 80 columns, to paste into a mailing-list reply
  svg    one SVG per step, step-01.svg ..., into the folder -o names (needs dot)
Without --format, -o FILE.txt means text, otherwise html.  Without -o, html and
text go to standard output.

A scenario's `expect` lines are checked when it runs under its own schemes; with
--schemes the outcomes are shown as they come.

exit status:
  0  the explainer was written
  2  usage error: bad arguments, unknown scheme or scenario name, --steps out of
     range, svg without -o
  3  malformed scenario file, or a step whose outcome contradicts its `expect`;
     the message reads FILE:LINE: what is wrong
  4  Graphviz's dot is missing (html and svg need it; text does not)
  5  the output could not be written

examples:
  hgmviz explain tour --format text > tour.txt       # paste into an email
  hgmviz explain overflow_toy_sign --steps 11 --format text      # one step
  hgmviz explain one_logical_mapping --format text --full --ascii
  hgmviz explain fork_amplifier -o fork.html         # a handout
  hgmviz explain pmd_sharing --schemes mainline,per_piece -o pmd.html
  hgmviz explain my-session.toml --format svg -o steps/
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):        # argparse's own exit code is 2 as well; say so once
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hgmviz explain", description="Explain a scenario step by step: as "
                "one HTML page,\nas plain text for email, or as one SVG per step.",
                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a shipped scenario name, or a path to a scenario file: an argument "
                   "with a slash or ending in .toml is a path (./tour for a file called "
                   "tour), anything else a shipped name")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="the file to write (html, text) or the folder (svg)")
    p.add_argument("-f", "--format", choices=FORMATS, default=None,
                   help="html (default), text or svg")
    p.add_argument("-s", "--schemes", metavar="A,B,C",
                   help="schemes to compare, one column each (default: the scenario's); "
                   "allowed: %s" % ", ".join(SCHEMES))
    p.add_argument("--full", action="store_true",
                   help="text: every counter and every drawing at every step (default: what "
                   "each step changed, then the counters after the last step)")
    p.add_argument("--ascii", action="store_true",
                   help="text: ASCII only (-> for →, * for ·, x for ×, - for − and –), for "
                   "mail clients that mangle them")
    p.add_argument("--steps", metavar="N,M-K",
                   help="only these steps, e.g. 11 or 3,5-7 (the counters' marks still "
                   "compare with the step before each)")
    return p


def main(argv=None) -> int:
    """``hgmviz explain``; returns the exit status (see ``--help``)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:          # --help (0) or a usage error (2): a status, not a raise
        return int(e.code or 0)
    fmt = args.format
    if fmt is None:
        fmt = "text" if (args.output or "").lower().endswith((".txt", ".text")) else "html"
    if fmt == "svg" and not args.output:
        print("hgmviz explain: --format svg writes one file per step: give the folder "
              "with -o DIR", file=sys.stderr)
        return EXIT_USAGE
    try:
        schemes = _check_schemes(args.schemes)
    except ValueError as e:
        print("hgmviz explain: --schemes: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        ex = build_explainer(args.scenario, schemes, fmt)
    except ScenarioError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SCENARIO
    except ValueError as e:            # an unknown shipped name
        print("hgmviz explain: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        ex = select_steps(ex, args.steps)
    except ValueError as e:
        print("hgmviz explain: --steps: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        if fmt == "text":
            out = to_text(ex, full=args.full, ascii=args.ascii)
        elif fmt == "html":
            out = to_html(ex, _generator())
        else:
            out = to_svgs(ex)
    except DotNotFound as e:
        print("hgmviz explain: %s" % e, file=sys.stderr)
        return EXIT_NO_DOT
    try:
        if fmt == "svg":
            os.makedirs(args.output, exist_ok=True)
            for name, svg in out:
                _write_into(args.output, name, svg)
            print("hgmviz explain: wrote %d SVG files to %s" % (len(out), args.output),
                  file=sys.stderr)
        elif args.output:
            _write(args.output, out)
        else:
            _stdout(out)
    except OSError as e:
        print("hgmviz explain: cannot write %s: %s" % (e.filename or args.output,
                                                       e.strerror or e), file=sys.stderr)
        return EXIT_WRITE
    return EXIT_OK


def _stdout(text: str):
    """Write to standard output; a reader that stops early (``| head``) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())       # no second error at exit
        os.close(devnull)


def scenarios_main(argv=None) -> int:
    """``hgmviz scenarios``: the shipped scenarios, name and title, within 80 columns."""
    p = argparse.ArgumentParser(prog="hgmviz scenarios",
                                description="List the scenarios shipped with hgmviz "
                                "(name, title); explain one with `hgmviz explain NAME`.")
    p.parse_args(argv)
    infos = list_scenarios()
    w = max([len("name")] + [len(i.name) for i in infos]) + 2
    lines = ["name".ljust(w) + "title"]
    for i in infos:
        lines += _wrap(i.title, WIDTH, " " * w, i.name.ljust(w))
    _stdout("\n".join(lines) + "\n")
    return EXIT_OK

