"""Layer 4: seeded homework problems (``hgmviz homework -s SEED [-c]``).

As the OSTEP homework simulators do: a problem is a pure function of its seed and options;
every run echoes its parameters; the questions and the answers come from the same code path
(the steps are run on a real :class:`~hgmviz.mm.Machine`), and ``-c`` only reveals the
answers.  A teacher can hand out one seed and keep another for an exam.
"""
from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass

from .mm import Machine
from .ops import (Exit, Fallocate, Fork, Madvise, MemfdCreate, Mmap, Munmap, Spawn, Touch,
                  UffdioContinue, UffdioRegister, World, run_step)
from .units import format_size

SCHEME_CHOICES = ("mainline", "per_piece", "thp_like", "hstate_present")


@dataclass(frozen=True)
class Question:
    step: int
    text: str
    answer: str


@dataclass(frozen=True)
class Problem:
    seed: int
    params: dict
    steps: tuple
    questions: tuple

    def text(self, show_answers: bool = False) -> str:
        p = self.params
        lines = ["hgmviz homework -s %d  (geometry %s, scheme %s, kernel %s, %d steps)"
                 % (self.seed, p["geometry"], p["scheme"], p["kernel"], len(self.steps)),
                 "",
                 "A machine with %s. Page size %s, hugepage (hstate) %s: %d base pages a folio."
                 % (p["pool"], p["page"], p["hstate"], p["pages"]),
                 "The page cache holds %d reference(s) on each folio it contains (kernel %s)."
                 % (p["pc_refs"], p["kernel"]),
                 ""]
        for i, s in enumerate(self.steps, 1):
            lines.append("step %2d: %s" % (i, describe(s, p)))
        lines.append("")
        for n, q in enumerate(self.questions, 1):
            lines.append("Q%d. %s" % (n, q.text))
            if show_answers:
                lines.append("    answer: %s" % q.answer)
        if not show_answers:
            lines += ["", "Run again with -c to see the answers."]
        return "\n".join(lines)


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


def homework(seed: int, scheme: str = None, geometry: str = "toy", kernel: str = None,
             steps: int = 8) -> Problem:
    """The problem for ``seed``: the same seed and options always give the same problem."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError("seed must be an int, not %r" % (seed,))
    if not 3 <= steps <= 40:
        raise ValueError("steps must be between 3 and 40, not %r" % (steps,))
    rng = random.Random(seed)
    scheme = scheme or rng.choice(SCHEME_CHOICES)
    if scheme not in SCHEME_CHOICES:
        raise ValueError("scheme must be one of %s, not %r" % (", ".join(SCHEME_CHOICES), scheme))
    kernel = kernel or rng.choice(["6.2", "6.18"])
    m = Machine(geometry=geometry, scheme=scheme, kernel=kernel)
    g = m.geometry
    h = g.hstates[0]
    H, P = h.size, g.PAGE_SIZE
    pool = {H: 4}
    plan = _plan(rng, H, P, m.scheme.supports_hgm, steps)
    m = Machine(nr_hugepages=pool, geometry=geometry, scheme=scheme, kernel=kernel)
    w = World(m)
    questions = []
    last = {}
    for i, op in enumerate(plan, 1):
        out = run_step(w, op)
        if out.status != "ok" and not isinstance(op, (Spawn, MemfdCreate)):
            questions.append(Question(i, "Does step %d succeed? If not, what does the kernel "
                                      "answer (errno or signal)?" % i,
                                      "no: %s" % out.status if out.status != "ok" else "yes"))
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
                                      % (mi["HugePages_Free"], mi["HugePages_Rsvd"])))
        elif kind == "cached":
            last["cached"] = "no"
            questions.append(Question(i, "After step %d, is file offset 0 in the page cache?" % i,
                                      "no"))
        elif kind == "refcount":
            questions.append(Question(i, "After step %d, what is the refcount of the folio at "
                                      "file offset 0?" % i, str(folio.refcount)))
        elif kind == "mapcount":
            questions.append(Question(i, "After step %d, what is the entire mapcount "
                                      "(folio_entire_mapcount) of the folio at file offset 0?" % i, str(folio.entire_mapcount)))
        else:
            j = rng.choice([0, 1, 3, h.pages_per_huge_page() - 1])
            questions.append(Question(i, "After step %d, what does /proc/kpagecount show for "
                                      "page %d of that folio?" % (i, j), str(folio.page_mapcount(j))))
    params = {"geometry": g.name, "scheme": scheme, "kernel": kernel, "pool": "%d x %s hugepages"
              % (pool[H], format_size(H)), "page": format_size(P), "hstate": format_size(H),
              "pages": h.pages_per_huge_page(), "pc_refs": m.kernel.pagecache_refs(
                  h.pages_per_huge_page())}
    return Problem(seed, params, tuple(plan), tuple(questions))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="hgmviz homework",
                                 description="A seeded hugetlb accounting problem.")
    ap.add_argument("-s", "--seed", type=int, required=True, help="the problem's seed")
    ap.add_argument("-c", "--compute", action="store_true", help="show the answers")
    ap.add_argument("--scheme", choices=SCHEME_CHOICES, help="accounting scheme (default: from the seed)")
    ap.add_argument("--kernel", choices=["6.2", "6.18"], help="kernel profile (default: from the seed)")
    ap.add_argument("--geometry", default="toy", choices=["toy", "x86_64"])
    ap.add_argument("--steps", type=int, default=8, help="number of steps (3-40)")
    args = ap.parse_args(argv)
    try:
        prob = homework(args.seed, scheme=args.scheme, geometry=args.geometry,
                        kernel=args.kernel, steps=args.steps)
    except (TypeError, ValueError) as e:
        print("hgmviz homework: %s" % e, file=sys.stderr)
        return 2
    print(prob.text(show_answers=args.compute))
    return 0
