"""Layer 4: seeded homework problems (``hgmviz homework -s SEED [-c]``; the command and the
class handouts are in :mod:`hgmviz.handout`).

As the OSTEP homework simulators do: a problem is a pure function of its seed and options;
every run echoes its parameters; the questions and the answers come from the same code path
(the steps are run on a real :class:`~hgmviz.mm.Machine`), and ``-c`` only reveals the
answers.  A teacher can hand out one seed and keep another for an exam.
"""
from __future__ import annotations

import random
import re
import textwrap
from dataclasses import dataclass

from . import core
from .mm import Machine
from .ops import (Exit, Fallocate, Fork, Madvise, MemfdCreate, Mmap, Munmap, Spawn, Touch,
                  UffdioContinue, UffdioRegister, World, run_step)
from .units import format_size

SCHEME_CHOICES = ("mainline", "per_piece", "thp_like", "hstate_present")
HGM_SCHEMES = SCHEME_CHOICES[1:]
TOPIC_CHOICES = ("collapse",)


@dataclass(frozen=True)
class Question:
    """One question: after ``step``, ``text``; its ``answer``, and ``why`` — the kernel rule
    that sets the value (with the function) and the steps that changed it, computed from
    the same run."""
    step: int
    text: str
    answer: str
    why: str = ""


@dataclass(frozen=True)
class Problem:
    seed: int
    params: dict
    steps: tuple
    questions: tuple

    def text(self, show_answers: bool = False) -> str:
        p = self.params
        topic = ", topic %s" % p["topic"] if p.get("topic") else ""
        lines = ["hgmviz homework -s %d  (geometry %s, scheme %s, kernel %s, %d steps%s)"
                 % (self.seed, p["geometry"], p["scheme"], p["kernel"], len(self.steps), topic),
                 "",
                 "A machine with %s. Page size %s, hugepage (hstate) %s: %d base pages a folio."
                 % (p["pool"], p["page"], p["hstate"], p["pages"]),
                 _pc_sentence(p),
                 ""]
        for i, s in enumerate(self.steps, 1):
            lines.append("step %2d: %s" % (i, describe(s, p)))
        lines.append("")
        for n, q in enumerate(self.questions, 1):
            lines.append("Q%d. %s" % (n, q.text))
            if show_answers:
                lines.append("    answer: %s" % q.answer)
                if q.why:
                    lines += [ln.replace("\xa0", " ") for ln in textwrap.wrap(
                        _UNIT_RE.sub("\\1\xa0\\2", "why: " + q.why), width=92,
                        initial_indent="    ", subsequent_indent="         ",
                        break_long_words=False, break_on_hyphens=False)]
        if not show_answers:
            lines += ["", "Run again with -c to see the answers."]
        return "\n".join(lines)


_UNIT_RE = re.compile(r"(\d) ((?:[KMGT]i)?B\b|leaf\b|leaves\b|references?\b)")


def _plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def _pc_sentence(p) -> str:
    """Which references the page cache holds, said properly (1 or folio_nr_pages())."""
    n = p["pc_refs"]
    how = ("one per folio before v6.7" if n == 1 else
           "folio_nr_pages() of them since v6.7, commit a08c7193e4f1")
    return ("The page cache holds %s on each folio it contains (__filemap_add_folio(): %s; "
            "kernel %s)." % (_plural(n, "reference"), how, p["kernel"]))


def describe(op, p=None) -> str:
    """One line of pseudo-C for a step (the record's own ``describe("c")``)."""
    return op.describe("c")


def _plan(rng: random.Random, H: int, P: int, hgm: bool, nsteps: int):
    """A random but meaningful sequence of steps on one 2-hugepage file."""
    steps = [MemfdCreate("f", 2 * H, H), Spawn("p"), Mmap("p", "f", 2 * H, "a"),
             Touch("p", ("a", rng.choice([0, P, 3 * P])))]
    procs = ["p"]
    registered = False
    split = False
    kids = 0
    while len(steps) < nsteps:
        r = rng.random()
        p = rng.choice(procs)
        off = rng.choice([0, P, 3 * P, H, H + 2 * P])
        if r < 0.30:
            steps.append(Touch(p, ("a", off)))
        elif r < 0.42 and kids < 2:
            kids += 1
            c = "c%d" % kids
            steps.append(Fork(p, c))
            procs.append(c)
        elif r < 0.52 and len(procs) > 1:
            q = procs.pop(rng.randrange(1, len(procs)))
            steps.append(Exit(q))
        elif r < 0.62:
            steps.append(Madvise(p, ("a", rng.choice([0, H])), rng.choice([P, H]), "MADV_DONTNEED"))
        elif r < 0.70:
            steps.append(Munmap(p, ("a", rng.choice([0, H])), rng.choice([H, P])))
        elif hgm and not split and r < 0.80:
            steps += [Fallocate("f", 0, 2 * H), Madvise("p", "a", 2 * H, "MADV_SPLIT")]
            split = True
        elif not registered and r < 0.88:
            steps.append(UffdioRegister("p", "a", 2 * H, "minor", rng.random() < 0.5))
            registered = True
        else:
            if not registered:
                steps.append(UffdioRegister("p", "a", 2 * H, "minor", rng.random() < 0.5))
                registered = True
            steps.append(UffdioContinue("p", ("a", rng.choice([0, P, H])),
                                        rng.choice([P, 2 * P, H]) if split else H))
    return steps[:max(nsteps, 3)]


# -----------------------------------------------------------------------------------------
# Reasons: the rule that sets each counter, and the steps that changed it
# -----------------------------------------------------------------------------------------
#: ``{scheme: {counter: rule}}``: how each scheme sets the counter a question asks about.
RULES = {
    "mainline": {
        "refcount": "Under mainline each hstate-level entry that maps the folio holds one "
                    "reference: hugetlb_no_page() (a fault), hugetlb_mfill_atomic_pte() "
                    "(UFFDIO_CONTINUE) and copy_hugetlb_page_range() (fork) take folio_get(); "
                    "__unmap_hugepage_range() drops it (mm/hugetlb.c; the rule of v6.2, the names of "
                    "current mainline: v6.2 calls hugetlb_mfill_atomic_pte() "
                    "hugetlb_mcopy_atomic_pte()).",
        "entire": "Under mainline each hstate-level entry that maps the folio adds one to the "
                  "head's _entire_mapcount (hugetlb_add_file_rmap(), include/linux/rmap.h, "
                  "v6.8; v6.2: page_dup_file_rmap(page, true)); __unmap_hugepage_range() takes "
                  "it off (hugetlb_remove_rmap(); v6.2: page_remove_rmap(page, vma, true)).",
        "page": "/proc/kpagecount shows folio_precise_page_mapcount(): the page's own "
                "_mapcount + 1, which mainline never writes for hugetlb (0), plus "
                "folio_entire_mapcount(), one per hstate-level mapping (hugetlb_add_file_rmap(); "
                "fs/proc/internal.h).",
    },
    "per_piece": {
        "refcount": "Under per_piece (HGM v1, 5 Jan 2023) every mapped leaf of any size holds "
                    "one reference (\"We increment the refcount once for each 4K mapping\", "
                    "T9); unmapping the leaf drops it.",
        "entire": "Under per_piece every mapped leaf of any size adds one to the head's "
                  "_entire_mapcount (\"each new PT mapping increments the compound_mapcount "
                  "by 1\", T2; HGM v1 hugetlb_add_file_rmap()); unmapping takes it off.",
        "page": "/proc/kpagecount shows the page's own _mapcount + 1 (per_piece never writes "
                "it: 0) plus folio_entire_mapcount(), one per mapped leaf of any size (T2): "
                "every page of the folio shows the number of leaves mapping any part of it "
                "(fs/proc/internal.h).",
    },
    "thp_like": {
        "refcount": "Under thp_like (HGM v2, 18 Feb 2023) every mapped leaf of any size holds "
                    "one reference (v2 22/46: \"if you have a PMD-mapped 1G page, the "
                    "reference count will be incremented by 512\"); unmapping drops it.",
        "entire": "Under thp_like only a leaf of the hstate's size adds one to "
                  "_entire_mapcount; a smaller leaf adds one to the _mapcount of each page "
                  "it covers instead (v2 22/46 hugetlb_add_file_rmap(): "
                  "page_add_file_rmap(hpage, vma, true) at the hstate shift, "
                  "page_add_file_rmap(subpage, vma, false) below it).",
        "page": "/proc/kpagecount shows the page's own _mapcount + 1 (one per smaller leaf "
                "covering this page, v2 22/46) plus folio_entire_mapcount() (one per "
                "hstate-size leaf) (fs/proc/internal.h).",
    },
    "hstate_present": {
        "refcount": "Under hstate_present (HGM RFC v1; T10, T12, T20) the folio holds one "
                    "reference per present hstate-level entry (a leaf, or a table on the way "
                    "to smaller leaves), however many leaves are mapped below it; the "
                    "reference goes when that entry goes back to none.",
        "entire": "Under hstate_present _entire_mapcount counts present hstate-level entries "
                  "(\"page_mapcount() is incremented if the hstate-level PTE is present\", "
                  "T12), not leaves: mapping more pieces below an entry changes nothing.",
        "page": "/proc/kpagecount shows 0 (the page's own _mapcount is unused) plus "
                "folio_entire_mapcount(): every page reports one per present hstate-level "
                "entry, even a page no leaf maps (the caveat of T12).",
    },
}
#: Rules every scheme shares.
POOL_RULE = ("HugePages_Free counts the pool's hugepages not allocated: alloc_hugetlb_folio() "
             "takes one when a fault or fallocate allocates a folio, free_huge_folio() gives "
             "it back when its last reference goes.  HugePages_Rsvd counts hugepages promised "
             "but not yet allocated: hugetlb_reserve_pages() reserves one at mmap for each "
             "hugepage of the range not yet in the page cache, alloc_hugetlb_folio() consumes "
             "it, and hugetlb_unreserve_pages() returns what is left when the file shrinks or "
             "is freed; munmap keeps a shared mapping's reservations (they belong to the "
             "file's resv_map) (mm/hugetlb.c, v6.2).")
CACHE_RULE = ("A folio enters the page cache when a fault allocates it (hugetlb_no_page() → "
              "alloc_hugetlb_folio() → hugetlb_add_to_page_cache()) or fallocate does "
              "(hugetlbfs_fallocate()); mmap only reserves and UFFDIO_CONTINUE only maps a "
              "folio already there; a hole punch or truncation removes it "
              "(remove_inode_hugepages(), fs/hugetlbfs/inode.c, v6.2).")
STATUS_RULE = "The kernel's answer, as the simulator computed it: "

_ERRNO_PREFIX = re.compile(r"\[Errno \d+\] ")
_EV_WORDS = {core.EV_SET: "maps", core.EV_CLEAR: "unmaps"}


@dataclass(frozen=True)
class _Seen:
    """What one step did to the folio at file offset 0, and the state after it."""
    label: str
    status: str
    path: tuple
    events: str
    fid: object            # the folio's id, None when offset 0 is not in the page cache
    refcount: int
    entire: int
    pages: tuple           # ((index, page_mapcount), ...)
    free: int
    rsvd: int


def _event_summary(m, ev, fids) -> str:
    """The core's events of one step that touched ``fids``, in words."""
    if not fids:
        return ""
    kinds, shifts, counts, folios = ev["kind"], ev["shift"], ev["count"], ev["folio"]
    tally = {}
    for k, sh, n, f in zip(kinds.tolist(), shifts.tolist(), counts.tolist(), folios.tolist()):
        if f in fids:
            key = (k, sh if k in _EV_WORDS else 0)
            tally[key] = tally.get(key, 0) + n
    out = []
    for (k, sh), n in tally.items():
        if k in _EV_WORDS:
            out.append("%s %s of %s" % (_EV_WORDS[k], _plural(n, "leaf").replace("leafs", "leaves"),
                                        format_size(1 << sh)))
        elif k == core.EV_HSTATE_POPULATED:
            out.append("its hstate-level entry becomes present" + (" (%d)" % n if n > 1 else ""))
        elif k == core.EV_HSTATE_CLEARED:
            out.append("its hstate-level entry goes back to none" + (" (%d)" % n if n > 1 else ""))
        elif k == core.EV_PAGECACHE_ADD:
            out.append("the page cache takes %s" % _plural(n, "reference"))
        elif k == core.EV_PAGECACHE_DEL:
            out.append("the page cache drops %s" % _plural(n, "reference"))
        elif k == core.EV_FOLIO_ALLOC:
            out.append("the folio is allocated from the pool")
        elif k == core.EV_FOLIO_FREE:
            out.append("the folio goes back to the pool")
    return ", ".join(out)


def _seen(w, op, out, m, H, js, before_fid) -> _Seen:
    f = w.files.get("f")
    folio = f.folio_at(0) if f is not None else None
    fid = folio.id if folio is not None else None
    fids = {x for x in (before_fid, fid) if x is not None}
    mi = m.meminfo()[H]
    path = []
    for fn in m.call_path:
        if fn not in path:
            path.append(fn)
    return _Seen(op.describe("c"), out.status, tuple(path),     # as the steps are listed
                 _event_summary(m, m.last_events, fids), fid,
                 folio.refcount if folio else 0, folio.entire_mapcount if folio else 0,
                 tuple((j, folio.page_mapcount(j)) for j in js) if folio else (),
                 mi["HugePages_Free"], mi["HugePages_Rsvd"])


def _history(seen, upto, value, show=str, none="No step up to step %d changed it.") -> str:
    """The steps up to ``upto`` (1-based) after which ``value(seen)`` differs from before."""
    bits = []
    for k in range(1, upto + 1):
        a, b = value(seen[k - 1]), value(seen[k])
        if a == b:
            continue
        s = seen[k]
        what = [x for x in (s.events,) if x]
        if s.path:
            what.append("via " + " → ".join(p + "()" for p in s.path))
        if s.status != "ok":
            what.append("the step itself fails with %s" % s.status)
        bits.append("step %d (%s) %s → %s%s" % (k, s.label, show(a), show(b),
                                               (": " + "; ".join(what)) if what else ""))
    if not bits:
        return none % upto
    return "Steps that changed it: " + "; ".join(bits) + "."


def _why(kind, scheme, seen, i, params, j=None) -> str:
    rules = RULES.get(scheme, {})
    pc = params["pc_refs"]
    if kind == "refcount":
        return ("%s The page cache adds %s while the folio is in it (__filemap_add_folio(), "
                "kernel %s). %s" % (rules.get("refcount", ""), _plural(pc, "reference"),
                                    params["kernel"],
                                    _history(seen, i, lambda s: s.refcount if s.fid is not None
                                             else None, lambda v: "absent" if v is None
                                             else str(v))))
    if kind == "mapcount":
        return "%s %s" % (rules.get("entire", ""),
                          _history(seen, i, lambda s: s.entire if s.fid is not None else None,
                                   lambda v: "absent" if v is None else str(v)))
    if kind == "page":
        return "%s %s" % (rules.get("page", ""),
                          _history(seen, i, lambda s: dict(s.pages).get(j)
                                   if s.fid is not None else None,
                                   lambda v: "absent" if v is None else str(v)))
    if kind == "free":
        return "%s %s" % (POOL_RULE, _history(seen, i, lambda s: (s.free, s.rsvd),
                                              lambda v: "Free %d/Rsvd %d" % v))
    if kind == "cached":
        return "%s %s" % (CACHE_RULE, _history(
            seen, i, lambda s: s.fid is not None, lambda v: "cached" if v else "not cached",
            "No step up to step %d put a folio at offset 0 in the page cache."))
    raise ValueError(kind)


def _plan_collapse(rng: random.Random, H: int, P: int, nsteps: int):
    """Chapter 9's operations: map the first hugepage in disjoint pieces (``UFFDIO_CONTINUE``,
    which installs the largest aligned leaves that fit), collapse it (``MADV_COLLAPSE``), then
    a few more steps on the second hugepage, a fork or a zap."""
    steps = [MemfdCreate("f", 2 * H, H), Spawn("p"), Mmap("p", "f", 2 * H, "a"),
             Fallocate("f", 0, 2 * H), Madvise("p", "a", 2 * H, "MADV_SPLIT"),
             UffdioRegister("p", "a", 2 * H, "minor", rng.random() < 0.5)]
    pieces = [(0, P), (P, 2 * P), (3 * P, H - 3 * P)]          # disjoint: no EEXIST
    for start, length in sorted(rng.sample(pieces, min(rng.choice([1, 2]), nsteps - 7))):
        steps.append(UffdioContinue("p", ("a", start), length))
    steps.append(Madvise("p", "a", H, "MADV_COLLAPSE"))
    while len(steps) < nsteps:
        r = rng.random()
        if r < 0.4:
            steps.append(UffdioContinue("p", ("a", H + rng.choice([0, P])), rng.choice([P, 2 * P])))
        elif r < 0.6:
            steps.append(Madvise("p", "a", 2 * H, "MADV_COLLAPSE"))
        elif r < 0.8:
            steps.append(Fork("p", "c%d" % len(steps)))
        else:
            steps.append(Madvise("p", ("a", 0), H, "MADV_DONTNEED"))
    return steps[:nsteps]


def homework(seed: int, scheme: str = None, geometry: str = "toy", kernel: str = None,
             steps: int = 8, topic: str = None) -> Problem:
    """The problem for ``seed``: the same seed and options always give the same problem.
    Each answer comes with its reason (:attr:`Question.why`), computed by the same run.

    ``topic="collapse"`` (chapter 9) maps the first hugepage in pieces with ``UFFDIO_CONTINUE``
    and collapses it with ``MADV_COLLAPSE`` (v2 34/46), under one of the HGM schemes; without a
    topic the steps are drawn as before, so existing seeds keep their problems."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError("seed must be an int, not %r" % (seed,))
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError("steps must be an int between 3 and 40, not %r" % (steps,))
    if not 3 <= steps <= 40:
        raise ValueError("steps must be between 3 and 40, not %r" % (steps,))
    if topic is not None and topic not in TOPIC_CHOICES:
        raise ValueError("topic must be one of %s or None, not %r"
                         % (", ".join(TOPIC_CHOICES), topic))
    if topic == "collapse" and steps < 8:
        raise ValueError("topic 'collapse' needs at least 8 steps, not %r" % (steps,))
    rng = random.Random(seed)
    scheme = scheme or rng.choice(HGM_SCHEMES if topic else SCHEME_CHOICES)
    if scheme not in SCHEME_CHOICES:
        raise ValueError("scheme must be one of %s, not %r" % (", ".join(SCHEME_CHOICES), scheme))
    if topic == "collapse" and scheme not in HGM_SCHEMES:
        raise ValueError("topic 'collapse' needs an HGM scheme (%s), not %r"
                         % (", ".join(HGM_SCHEMES), scheme))
    kernel = kernel or rng.choice(["6.2", "6.18"])
    m = Machine(geometry=geometry, scheme=scheme, kernel=kernel)
    g = m.geometry
    h = g.hstates[0]
    H, P = h.size, g.PAGE_SIZE
    pool = {H: 4}
    plan = (_plan_collapse(rng, H, P, steps) if topic == "collapse"
            else _plan(rng, H, P, m.scheme.supports_hgm, steps))
    m = Machine(nr_hugepages=pool, geometry=geometry, scheme=scheme, kernel=kernel)
    params = {"geometry": g.name, "scheme": scheme, "kernel": kernel, "topic": topic,
              "pool": "%d x %s hugepages"
              % (pool[H], format_size(H)), "page": format_size(P), "hstate": format_size(H),
              "pages": h.pages_per_huge_page(), "pc_refs": m.kernel.pagecache_refs(
                  h.pages_per_huge_page())}
    js = (0, 1, 3, h.pages_per_huge_page() - 1)
    w = World(m)
    mi0 = m.meminfo()[H]
    seen = [_Seen("start", "ok", (), "", None, 0, 0, (), mi0["HugePages_Free"],
                  mi0["HugePages_Rsvd"])]
    questions = []
    last = {}
    for i, op in enumerate(plan, 1):
        out = run_step(w, op)
        seen.append(_seen(w, op, out, m, H, js, seen[-1].fid))
        # asked of every step that fails, and of the steps that may (so "yes" is an answer)
        if (out.status != "ok" and not isinstance(op, (Spawn, MemfdCreate))) or \
                isinstance(op, (UffdioContinue, Munmap)) or \
                (isinstance(op, Madvise) and op.advice == "MADV_SPLIT"):
            if out.status != "ok":
                why = STATUS_RULE + _ERRNO_PREFIX.sub("", out.message or out.status)
            else:
                why = ("It succeeds%s. Path: %s." % (
                    (": " + seen[-1].events) if seen[-1].events else "",
                    " → ".join(fn + "()" for fn in seen[-1].path) or "none"))
            questions.append(Question(i, "Does step %d succeed? If not, what does the kernel "
                                      "answer (errno or signal)?" % i,
                                      "no: %s" % out.status if out.status != "ok" else "yes",
                                      why))
        f = w.files.get("f")
        if f is None or i < 3:
            continue
        folio = f.folio_at(0)
        kind = rng.choice(["refcount", "mapcount", "page", "free"])
        if folio is None:
            kind = "cached" if last.get("cached") != "no" else "free"
        if kind == "free":
            mi = m.meminfo()[H]
            questions.append(Question(i, "After step %d, what are HugePages_Free and "
                                      "HugePages_Rsvd?" % i,
                                      "HugePages_Free %d, HugePages_Rsvd %d"
                                      % (mi["HugePages_Free"], mi["HugePages_Rsvd"]),
                                      _why("free", scheme, seen, i, params)))
        elif kind == "cached":
            last["cached"] = "no"
            questions.append(Question(i, "After step %d, is file offset 0 in the page cache?" % i,
                                      "no", _why("cached", scheme, seen, i, params)))
        elif kind == "refcount":
            questions.append(Question(i, "After step %d, what is the refcount of the folio at "
                                      "file offset 0?" % i, str(folio.refcount),
                                      _why("refcount", scheme, seen, i, params)))
        elif kind == "mapcount":
            questions.append(Question(i, "After step %d, what is the entire mapcount "
                                      "(folio_entire_mapcount) of the folio at file offset 0?"
                                      % i, str(folio.entire_mapcount),
                                      _why("mapcount", scheme, seen, i, params)))
        else:
            j = rng.choice(js)
            questions.append(Question(i, "After step %d, what does /proc/kpagecount show for "
                                      "page %d of that folio?" % (i, j), str(folio.page_mapcount(j)),
                                      _why("page", scheme, seen, i, params, j)))
    return Problem(seed, params, tuple(plan), tuple(questions))
