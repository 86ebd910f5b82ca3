"""Seeded homework: a pure function of the seed; -c only reveals the answers."""
import pytest

import hgmviz as hv
from hgmviz.cli import main as cli
from hgmviz.ops import World, run_step
from hgmviz.teach import homework

pytestmark = pytest.mark.nojit


def test_same_seed_same_problem_and_answers_are_hidden():
    a, b = homework(11), homework(11)
    assert a == b
    hidden, shown = a.text(False), a.text(True)
    assert "answer:" not in hidden and "answer:" in shown
    # revealing adds answer lines and changes nothing else
    # (an answer and its reason are the indented lines under each question)
    assert [ln for ln in shown.splitlines() if not ln.startswith("    ")] == \
        [ln for ln in hidden.splitlines() if "Run again" not in ln][:-1]
    assert not any(ln.startswith("    ") for ln in hidden.splitlines())
    assert hidden.splitlines()[0] == shown.splitlines()[0]
    assert "-s 11" in hidden.splitlines()[0]          # the run echoes its parameters


def test_different_seeds_differ():
    texts = {homework(s).text() for s in range(8)}
    assert len(texts) == 8


@pytest.mark.parametrize("seed,topic", [(s, None) for s in range(6)] +
                         [(s, "collapse") for s in range(6)])
def test_answers_match_an_independent_replay(seed, topic):
    prob = homework(seed, steps=10, topic=topic)
    p = prob.params
    m = hv.Machine(nr_hugepages={int(hv.TOY.hstates[0].size): 4}, geometry="toy",
                   scheme=p["scheme"], kernel=p["kernel"])
    w = World(m)
    by_step = {}
    for q in prob.questions:
        by_step.setdefault(q.step, []).append(q)
    for i, op in enumerate(prob.steps, 1):
        out = run_step(w, op)
        for q in by_step.get(i, []):
            folio = w.files["f"].folio_at(0)
            if q.text.startswith("Does step"):
                assert q.answer == ("yes" if out.ok else "no: %s" % out.status)
            elif "refcount" in q.text:
                assert q.answer == str(folio.refcount)
            elif "entire mapcount" in q.text:
                assert q.answer == str(folio.entire_mapcount)
            elif "kpagecount" in q.text:
                j = int(q.text.split("page ")[1].split(" ")[0])
                assert q.answer == str(folio.page_mapcount(j))
            elif "page cache" in q.text:
                assert q.answer == "no" and folio is None


def test_cli(capsys):
    assert cli(["homework", "-s", "3"]) == 0
    out = capsys.readouterr().out
    assert "Q1." in out and "answer:" not in out
    assert cli(["homework", "-s", "3", "-c"]) == 0
    assert "answer:" in capsys.readouterr().out
    assert cli(["homework", "-s", "3", "--steps", "99"]) == 2
    assert "steps" in capsys.readouterr().err
    with pytest.raises(TypeError):
        homework("3")


def _changes(prob, value):
    """Replay ``prob`` independently: ``{step: (before, after)}`` where ``value(world)``
    changed."""
    p = prob.params
    m = hv.Machine(nr_hugepages={int(hv.TOY.hstates[0].size): 4}, geometry="toy",
                   scheme=p["scheme"], kernel=p["kernel"])
    w = World(m)
    out, prev = {}, value(w)
    for i, op in enumerate(prob.steps, 1):
        run_step(w, op)
        now = value(w)
        if now != prev:
            out[i] = (prev, now)
        prev = now
    return out


def _refcount(w):
    f = w.files.get("f")
    folio = f.folio_at(0) if f is not None else None
    return None if folio is None else folio.refcount


@pytest.mark.parametrize("seed,topic", [(s, None) for s in range(12)] +
                         [(s, "collapse") for s in range(6)])
def test_every_answer_gives_its_reason(seed, topic):
    prob = homework(seed, steps=10, topic=topic)
    rule_fns = {"mainline": "hugetlb_add_file_rmap()", "per_piece": "T2",
                "thp_like": "v2 22/46", "hstate_present": "T12"}
    assert prob.questions
    for q in prob.questions:
        assert q.why, q
        assert "(s)" not in q.why and "(s)" not in q.text
        if q.text.startswith("Does step"):
            if q.answer == "yes":
                assert q.why.startswith("It succeeds")
            else:
                errno = q.answer.split(": ")[1]
                assert errno in q.why and "[Errno" not in q.why
        elif "entire mapcount" in q.text or "kpagecount" in q.text:
            assert rule_fns[prob.params["scheme"]] in q.why
        elif "HugePages_Free" in q.text:
            assert "alloc_hugetlb_folio()" in q.why and "hugetlb_reserve_pages()" in q.why
        elif "page cache" in q.text:
            assert "hugetlb_add_to_page_cache()" in q.why


@pytest.mark.parametrize("seed,topic", [(s, None) for s in range(12)] +
                         [(s, "collapse") for s in range(6)])
def test_refcount_reasons_name_exactly_the_steps_that_changed_it(seed, topic):
    prob = homework(seed, steps=12, topic=topic)
    changes = _changes(prob, _refcount)
    show = lambda v: "absent" if v is None else str(v)  # noqa: E731
    asked = [q for q in prob.questions if "the refcount of the folio" in q.text]
    for q in asked:
        named = {int(x.split(" ")[0]) for x in q.why.split("step ")[1:]
                 if x.split(" ")[0].isdigit() and x.split(" ")[1].startswith("(")}
        assert named == {k for k in changes if k <= q.step}, q.why
        for k, (a, b) in changes.items():
            if k <= q.step:
                assert "%s → %s" % (show(a), show(b)) in q.why.split("step %d (" % k)[1]
        if not any(k <= q.step for k in changes):
            assert "No step up to step %d changed it." % q.step in q.why


def test_refcount_reason_names_the_unmap_and_its_function():
    # a problem where MADV_DONTNEED drops a reference, asked about after it
    for seed in range(300):
        prob = homework(seed, scheme="mainline", kernel="6.2", steps=12)
        changes = _changes(prob, _refcount)
        zaps = [i for i, s in enumerate(prob.steps, 1) if getattr(s, "advice", "") ==
                "MADV_DONTNEED" and i in changes and changes[i][1] is not None]
        qs = [q for q in prob.questions if "the refcount" in q.text and zaps
              and q.step >= zaps[0]]
        if qs:
            break
    else:
        pytest.fail("no seed drops a reference with MADV_DONTNEED and asks the refcount after")
    a, b = changes[zaps[0]]
    assert b == a - 1                                   # one hstate-level leaf, one reference
    part = qs[0].why.split("step %d (" % zaps[0])[1]
    assert part.startswith(prob.steps[zaps[0] - 1].describe("c") + ")")    # as listed
    assert "%d → %d: unmaps 1 leaf of 32 KiB" % (a, b) in part
    assert "__unmap_hugepage_range()" in part


def test_status_question_is_also_asked_when_the_step_succeeds():
    answers = {q.answer for s in range(30) for q in homework(s).questions
               if q.text.startswith("Does step")}
    assert "yes" in answers and any(a.startswith("no: ") for a in answers)


def test_text_says_references_properly():
    assert "holds 1 reference on each folio" in homework(3).text()       # kernel 6.2
    six18 = homework(3, kernel="6.18").text()
    assert "holds 8 references on each folio" in six18 and "(s)" not in six18


@pytest.mark.parametrize("seed", range(10))
def test_collapse_topic_maps_in_pieces_then_collapses_under_an_hgm_scheme(seed):
    """Chapter 9's homework: UFFDIO_CONTINUE pieces of the first hugepage, then MADV_COLLAPSE."""
    prob = homework(seed, topic="collapse")
    assert prob.params["scheme"] in ("per_piece", "thp_like", "hstate_present")
    lines = [st.describe("c") for st in prob.steps]
    collapse = next(i for i, ln in enumerate(lines) if "MADV_COLLAPSE" in ln)
    assert any("UFFDIO_CONTINUE" in ln for ln in lines[:collapse])
    assert any("MADV_SPLIT" in ln for ln in lines[:collapse])
    assert "topic collapse" in prob.text().splitlines()[0]
    assert any(q.step == collapse + 1 for q in prob.questions), "no question on the collapse"
    # the pieces mapped before the collapse are disjoint: every step up to it succeeds
    early = [q for q in prob.questions if q.text.startswith("Does") and q.step <= collapse + 1]
    assert early and all(q.answer == "yes" for q in early)


def test_collapse_topic_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="HGM scheme"):
        homework(1, scheme="mainline", topic="collapse")
    with pytest.raises(ValueError, match="topic must be one of collapse"):
        homework(1, topic="fork")
    with pytest.raises(ValueError, match="at least 8 steps"):
        homework(1, topic="collapse", steps=5)
    assert homework(1) == homework(1, topic=None)


def test_cli_topic(capsys):
    assert cli(["homework", "-s", "2023", "--topic", "collapse", "-c"]) == 0
    out = capsys.readouterr().out
    assert "MADV_COLLAPSE" in out and "answer:" in out and "topic collapse" in out


def test_handouts_of_a_topic_replay_with_the_topic():
    from hgmviz.handout import class_problems, handout_html, handout_markdown
    problems = class_problems(2, 5, topic="collapse")
    assert all(p.params["topic"] == "collapse" for p in problems)
    assert "`hgmviz homework -s 6 --topic collapse`" in handout_markdown(problems[1], 2, 2)
    assert "<code>hgmviz homework -s 5 --topic collapse</code>" in handout_html(problems[0])
    assert "`hgmviz homework -s 5`." in handout_markdown(class_problems(1, 5)[0])
