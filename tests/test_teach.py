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
    assert [ln for ln in shown.splitlines() if "answer:" not in ln] == \
        [ln for ln in hidden.splitlines() if "Run again" not in ln][:-1]
    assert hidden.splitlines()[0] == shown.splitlines()[0]
    assert "-s 11" in hidden.splitlines()[0]          # the run echoes its parameters


def test_different_seeds_differ():
    texts = {homework(s).text() for s in range(8)}
    assert len(texts) == 8


@pytest.mark.parametrize("seed", range(6))
def test_answers_match_an_independent_replay(seed):
    prob = homework(seed, steps=10)
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
                assert q.answer == ("no: %s" % out.status)
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
