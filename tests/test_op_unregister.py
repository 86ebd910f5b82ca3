"""UFFDIO_UNREGISTER, added as one operation record (hgmviz/ops/records.py) on the machine's
existing model (Process.uffdio_unregister): the explorer, scenario files, validation and
descriptions pick it up without changes of their own."""
import pytest

from hgmviz import ops as O
from hgmviz.describe import op_label
from hgmviz.scenarios import parse_scenario, session_text
from hgmviz.session import InvalidOperation, Session
from hgmviz.teach import describe
from hgmviz.widgets.explorer import OPERATION_BUTTONS, explore

H = 2 << 20


def session():
    s = Session(nr_hugepages={H: 4})
    for op in (O.Spawn("p"), O.MemfdCreate("f", 2 * H, H), O.Fallocate("f", 0, 2 * H),
               O.Mmap("p", "f", 2 * H, "a"), O.UffdioRegister("p", "a", 2 * H, "minor")):
        assert s.apply(op).ok
    return s


def test_unregister_ends_the_userfaults_of_the_range():
    s = session()
    assert s.apply(O.Touch("p", ("a", 0x5000))).status == "userfault"
    out = s.apply(O.UffdioUnregister("p", "a", H))
    assert out.ok and s.last.call_paths["mainline"]
    assert s.apply(O.Touch("p", ("a", 0x5000))).ok                  # a normal fault now
    assert s.apply(O.Touch("p", ("a", H + 0x5000))).status == "userfault"   # still registered
    assert s.apply(O.UffdioUnregister("p", ("a", 0x1000), H)).status == "EINVAL"  # a split inside a hugepage


def test_unregister_is_a_button_of_the_explorer():
    assert "unregister" in [k for k, _, _ in OPERATION_BUTTONS]
    ex = explore(session=session())
    b = ex.buttons["unregister"]
    assert b.description == "UFFDIO_UNREGISTER" and "userfaultfd_unregister" in b.tooltip
    op = ex.build_op("unregister")
    assert isinstance(op, O.UffdioUnregister) and op.proc == "p"
    b.click()
    assert isinstance(ex.session.last.op, O.UffdioUnregister) and ex.session.last.ok


def test_unregister_round_trips_through_a_scenario_file():
    s = session()
    s.apply(O.UffdioUnregister("p", ("a", H), H))
    text = session_text(s)
    assert 'op = "UffdioUnregister"' in text and 'length = "2 MiB"' in text
    sc = parse_scenario(text)
    assert sc.steps[-1].op == O.UffdioUnregister("p", ("a", H), H)
    bad = text.rsplit('length = "2 MiB"', 1)[0] + 'length = "two"\n'
    with pytest.raises(ValueError, match=r":%d: step 6 \(UffdioUnregister\): field 'length'"
                       % bad.count("\n")):
        parse_scenario(bad)


def test_unregister_fields_are_validated():
    s = session()
    with pytest.raises(InvalidOperation, match="UffdioUnregister.proc: unknown process label 'q'"):
        s.apply(O.UffdioUnregister("q", "a", H))
    with pytest.raises(InvalidOperation, match="UffdioUnregister.length: must be an integer"):
        s.apply(O.UffdioUnregister("p", "a", "2 MiB"))
    assert s.position == 5


def test_unregister_describes_itself():
    op = O.UffdioUnregister("p", ("a", 0x200000), H)
    assert op_label(op) == "UFFDIO_UNREGISTER p a+0x200000, 2 MiB"
    assert describe(op) == "p: UFFDIO_UNREGISTER(a + 2 MiB, 2 MiB)"
    assert op.describe_call() == "p.uffdio_unregister(a+0x200000, length=2M)"
