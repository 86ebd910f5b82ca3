"""Layer 4: homework handouts for a class (``hgmviz homework --class N -o DIR``).

Student ``k`` of ``N`` gets the problem of seed ``first + k - 1`` (:func:`hgmviz.teach.homework`,
the same seed the one-problem command takes, so a student can replay it with
``hgmviz homework -s SEED``).  :func:`write_handouts` writes, into ``DIR``:

* ``student-01.md`` / ``.html``, ... — one problem each, with room for the answers;
* ``students.html`` — every handout in one file, one per printed page (print it once);
* ``key.md`` / ``key.html`` — the teacher's key: each student's seed, the answers and why
  (the kernel rule and the steps that changed the counter).

Markdown is plain CommonMark (numbered lists, no tables), HTML is one self-contained page
with print CSS (A4 and Letter: 2 cm margins, 10.5 pt text).  Nothing else in ``DIR`` is
touched; the same arguments always write the same bytes.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import sys

from .teach import SCHEME_CHOICES, TOPIC_CHOICES, Problem, _pc_sentence, homework

__all__ = ["class_problems", "handout_markdown", "handout_html", "key_markdown", "key_html",
           "write_handouts", "MAX_CLASS"]

MAX_CLASS = 500

_CSS = """
body { font: 11pt/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 46em;
       margin: 2em auto; padding: 0 1em; color: #1a1a1a; background: #fff; }
h1 { font-size: 1.35em; margin: 0 0 .3em; }
h2 { font-size: 1.1em; margin: 1.2em 0 .3em; }
code, .op { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: .95em; }
ol.steps li, ol.qs li { margin: .25em 0; }
.meta { color: #444; }
.name { margin: .8em 0 1em; }
.blank { display: block; border-bottom: 1px solid #888; height: 1.6em; margin: .2em 0 .6em; }
.answer { font-weight: 600; }
.why { color: #333; margin: .15em 0 .6em; }
.page { page-break-after: always; break-after: page; }
.page:last-child { page-break-after: auto; break-after: auto; }
@media print {
  @page { margin: 2cm; }
  body { font-size: 10.5pt; max-width: none; margin: 0; padding: 0; }
  a { color: inherit; text-decoration: none; }
}
"""


def _check(n, first):
    for name, v in (("class size", n), ("first seed", first)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError("%s must be an int, not %r" % (name, v))
    if not 1 <= n <= MAX_CLASS:
        raise ValueError("class size must be between 1 and %d students, not %d" % (MAX_CLASS, n))


def class_problems(n: int, first: int = 1, **options) -> list:
    """The problems of a class of ``n``: seeds ``first .. first + n - 1`` (``options`` go to
    :func:`~hgmviz.teach.homework`: scheme, geometry, kernel, steps)."""
    _check(n, first)
    return [homework(first + k, **options) for k in range(n)]


def _setup(p: Problem) -> list:
    q = p.params
    return ["A machine with %s. Page size %s, hugepage (hstate) %s: %d base pages a folio. "
            "Accounting scheme %s, kernel %s." % (q["pool"], q["page"], q["hstate"], q["pages"],
                                                   q["scheme"], q["kernel"]),
            _pc_sentence(q)]


def _title(p: Problem, k: int, n: int) -> str:
    return "hgmviz homework: student %d of %d (seed %d)" % (k, n, p.seed)


def _md(text: str) -> str:
    """Plain text safe in Markdown: the characters that would start emphasis, code or a
    link are escaped (``_mapcount`` stays ``_mapcount`` when rendered)."""
    for ch in "\\`*[]<>":
        text = text.replace(ch, "\\" + ch)
    return re.sub(r"(?<![A-Za-z0-9])_", r"\\_", text)   # an intraword _ never emphasises


def _md_code(text: str) -> str:
    tick = "``" if "`" in text else "`"
    return "%s%s%s" % (tick, text, tick)


def handout_markdown(p: Problem, k: int = 1, n: int = 1) -> str:
    """Student ``k``'s handout in Markdown: the set-up, the steps, the questions, blanks."""
    out = ["# " + _title(p, k, n), "", "Name: " + "_" * 30, ""]
    out += [_md(" ".join(_setup(p))), "", "## Steps", ""]
    out += ["%d. %s" % (i, _md_code(s.describe("c"))) for i, s in enumerate(p.steps, 1)]
    out += ["", "## Questions", ""]
    for i, q in enumerate(p.questions, 1):
        out += ["%d. %s" % (i, _md(q.text)), "", "   Answer: " + "_" * 30, ""]
    out += ["Replay this problem with `%s`." % _replay(p), ""]
    return "\n".join(out)


def _replay(p) -> str:
    """The command that prints this problem again (with its topic, if it has one)."""
    topic = p.params.get("topic")
    return "hgmviz homework -s %d%s" % (p.seed, " --topic %s" % topic if topic else "")


def _seeds(problems) -> str:
    n = len(problems)
    if n == 1:
        return "1 student, seed %d." % problems[0].seed
    return "%d students, seeds %d to %d." % (n, problems[0].seed, problems[-1].seed)


def key_markdown(problems: list) -> str:
    """The teacher's key in Markdown: per student the seed, the answers and the reasons."""
    out = ["# hgmviz homework: answer key", "",
           "%s Student *k* has seed %d + *k* − 1; "
           "`hgmviz homework -s SEED -c` prints one problem with its answers."
           % (_seeds(problems), problems[0].seed),
           ""]
    for k, p in enumerate(problems, 1):
        out += ["## Student %d (seed %d)" % (k, p.seed), "", _md(" ".join(_setup(p))), ""]
        out += ["### Steps", ""]
        out += ["%d. %s" % (i, _md_code(s.describe("c"))) for i, s in enumerate(p.steps, 1)]
        out += ["", "### Questions", ""]
        for i, q in enumerate(p.questions, 1):
            out += ["%d. %s" % (i, _md(q.text)), "", "   **Answer:** %s" % _md(q.answer), ""]
            if q.why:
                out += ["   *Why:* %s" % _md(q.why), ""]
    return "\n".join(out)


def _e(text) -> str:
    return html.escape(str(text), quote=False)


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>%s</title><style>%s</style></head><body>\n%s\n</body></html>\n"
            % (_e(title), _CSS, body))


def _steps_html(p: Problem) -> str:
    return "<ol class=\"steps\">%s</ol>" % "".join(
        "<li><span class=\"op\">%s</span></li>" % _e(s.describe("c")) for s in p.steps)


def _handout_section(p: Problem, k: int, n: int) -> str:
    qs = "".join("<li>%s<span class=\"blank\"></span></li>" % _e(q.text) for q in p.questions)
    return ("<section class=\"page\"><h1>%s</h1><p class=\"name\">Name: "
            "______________________________</p><p class=\"meta\">%s</p><h2>Steps</h2>%s"
            "<h2>Questions</h2><ol class=\"qs\">%s</ol><p class=\"meta\">Replay this problem "
            "with <code>%s</code>.</p></section>"
            % (_e(_title(p, k, n)), "<br>".join(_e(x) for x in _setup(p)), _steps_html(p), qs,
               _e(_replay(p))))


def handout_html(p: Problem, k: int = 1, n: int = 1) -> str:
    """Student ``k``'s handout as one printable HTML page."""
    return _page(_title(p, k, n), _handout_section(p, k, n))


def students_html(problems: list) -> str:
    """Every student's handout in one HTML file, each on its own printed page."""
    n = len(problems)
    return _page("hgmviz homework: %d handouts" % n,
                 "\n".join(_handout_section(p, k, n) for k, p in enumerate(problems, 1)))


def key_html(problems: list) -> str:
    """The teacher's key as one HTML page (a printed page per student)."""
    parts = []
    for k, p in enumerate(problems, 1):
        qs = "".join("<li>%s<div class=\"answer\">Answer: %s</div>%s</li>"
                     % (_e(q.text), _e(q.answer),
                        "<div class=\"why\">Why: %s</div>" % _e(q.why) if q.why else "")
                     for q in p.questions)
        parts.append("<section class=\"page\"><h2>Student %d (seed %d)</h2><p class=\"meta\">"
                     "%s</p>%s<ol class=\"qs\">%s</ol></section>"
                     % (k, p.seed, "<br>".join(_e(x) for x in _setup(p)), _steps_html(p), qs))
    head = ("<h1>hgmviz homework: answer key</h1><p class=\"meta\">%s "
            "Student <i>k</i> has seed %d + <i>k</i> − 1; <code>hgmviz homework -s SEED -c</code> "
            "prints one problem with its answers.</p>" % (_e(_seeds(problems)), problems[0].seed))
    return _page("hgmviz homework: answer key", head + "\n".join(parts))


def handout_files(problems: list, formats=("md", "html")) -> dict:
    """``{file name: text}`` of a class's handouts and key (what :func:`write_handouts` writes)."""
    bad = [f for f in formats if f not in ("md", "html")]
    if bad or not formats:
        raise ValueError("formats must be md and/or html, not %r" % (list(formats),))
    n = len(problems)
    width = max(2, len(str(n)))
    files = {}
    for k, p in enumerate(problems, 1):
        stem = "student-%0*d" % (width, k)
        if "md" in formats:
            files[stem + ".md"] = handout_markdown(p, k, n)
        if "html" in formats:
            files[stem + ".html"] = handout_html(p, k, n)
    if "html" in formats:
        files["students.html"] = students_html(problems)
        files["key.html"] = key_html(problems)
    if "md" in formats:
        files["key.md"] = key_markdown(problems)
    return files


def write_handouts(directory, n: int, first: int = 1, formats=("md", "html"), **options) -> list:
    """Write a class's handouts and key into ``directory`` (created if missing); returns the
    paths written.  TypeError/ValueError for a bad class size, seed or format (nothing
    written); OSError when the directory cannot be written."""
    files = handout_files(class_problems(n, first, **options), formats)
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError("%s exists and is not a directory" % directory)
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, text in files.items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        written.append(path)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="hgmviz homework",
        description="A seeded hugetlb accounting problem (-s SEED, -c for the answers and "
                    "why), or handouts for a class (--class N -o DIR: student k gets seed "
                    "SEED + k - 1, SEED 1 by default; a key with the answers for the teacher).",
        epilog="exit status: 0 done, 2 bad arguments, 5 the handouts could not be written")
    ap.add_argument("-s", "--seed", type=int, help="the problem's seed (with --class: the first "
                    "student's, default 1)")
    ap.add_argument("-c", "--compute", action="store_true", help="show the answers and why")
    ap.add_argument("--class", dest="klass", type=int, metavar="N",
                    help="write handouts for N students (needs -o DIR)")
    ap.add_argument("-o", "--output", metavar="DIR", help="directory for the handouts")
    ap.add_argument("--format", default="md,html", help="handout formats: md, html or md,html "
                    "(default md,html)")
    ap.add_argument("--scheme", choices=SCHEME_CHOICES, help="accounting scheme (default: from the seed)")
    ap.add_argument("--kernel", choices=["6.2", "6.18"], help="kernel profile (default: from the seed)")
    ap.add_argument("--geometry", default="toy", choices=["toy", "x86_64"])
    ap.add_argument("--steps", type=int, default=8, help="number of steps (3-40)")
    ap.add_argument("--topic", choices=TOPIC_CHOICES,
                    help="steps on one chapter's operations (collapse: chapter 9)")
    args = ap.parse_args(argv)
    opts = dict(scheme=args.scheme, geometry=args.geometry, kernel=args.kernel, steps=args.steps)
    if args.topic:
        opts["topic"] = args.topic
    if args.klass is None:
        if args.output is not None:
            print("hgmviz homework: -o DIR writes handouts: give --class N too", file=sys.stderr)
            return 2
        if args.seed is None:
            print("hgmviz homework: give -s SEED (one problem) or --class N -o DIR (handouts)",
                  file=sys.stderr)
            return 2
        try:
            prob = homework(args.seed, **opts)
        except (TypeError, ValueError) as e:
            print("hgmviz homework: %s" % e, file=sys.stderr)
            return 2
        print(prob.text(show_answers=args.compute))
        return 0
    if args.output is None:
        print("hgmviz homework: --class N needs -o DIR (where to write the handouts)",
              file=sys.stderr)
        return 2
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    try:
        paths = write_handouts(args.output, args.klass, 1 if args.seed is None else args.seed,
                               formats=formats, **opts)
    except (TypeError, ValueError) as e:
        print("hgmviz homework: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:
        print("hgmviz homework: cannot write the handouts: %s" % e, file=sys.stderr)
        return 5
    print("wrote %d files to %s (handouts student-*.%s, key.%s)"
          % (len(paths), args.output, "{md,html}" if len(formats) > 1 else formats[0],
             "{md,html}" if len(formats) > 1 else formats[0]))
    return 0
