"""One checkpoint type owned by mm: ``Machine.checkpoint()`` / ``restore()`` / ``state()``;
the session and the renderer use only the machine's public API."""
import ast
import pathlib
import warnings

import pytest

import hgmviz as hv
from hgmviz.errors import SimError
from hgmviz.mm import Machine
from hgmviz.mm.checkpoint import Checkpoint, CheckpointMismatch
from hgmviz.session import Session, checkpoint_as_snapshot, machine_checkpoint, machine_restore

pytestmark = pytest.mark.nojit

T32, T256 = 32 << 10, 256 << 10
K4 = 4 << 10
PKG = pathlib.Path(hv.__file__).resolve().parent


def toy(**kw):
    kw.setdefault("nr_hugepages", {T256: 2, T32: 4})
    return hv.Machine(geometry="toy", scheme=kw.pop("scheme", "per_piece"), **kw)


def busy(m):
    f = m.memfd_create(size=T256, hstate=T256)
    f.fallocate(0, T256)
    p = m.spawn()
    a = p.mmap(f, T256)
    p.madvise(a, T256, hv.MADV_SPLIT)
    p.uffdio_register(a, T256, mode="minor")
    p.uffdio_continue(a, 3 * K4)
    return f, p, a


def test_checkpoint_restores_exactly_and_can_be_restored_again():
    m = toy()
    f, p, a = busy(m)
    ck = m.checkpoint()
    assert isinstance(ck, Checkpoint) and ck.nbytes > 0 and ck.version == m.version
    d = m.state_digest()
    q = p.fork()
    q.exit()
    p.munmap(a, T256)
    f.close()
    assert m.state_digest() != d
    m.restore(ck)
    assert m.state_digest() == d and m.audit() == []
    p.uffdio_continue(a + 8 * K4, K4)        # the machine goes on from there
    m.restore(ck)                            # the checkpoint was not disturbed
    assert m.state_digest() == d
    # the file handle a script holds still names the same file after the restore
    assert m.files[0] is f and f.folio_at(0) is not None


def test_snapshot_is_the_same_checkpoint_and_the_session_aliases_still_work():
    m = toy()
    busy(m)
    snap = m.snapshot()
    assert isinstance(snap, Checkpoint)
    ck = machine_checkpoint(m)
    assert isinstance(ck, Checkpoint) and checkpoint_as_snapshot(m, ck) is ck
    d = m.state_digest()
    m.spawn()
    machine_restore(m, ck)
    assert m.state_digest() == d


def test_a_machine_configured_alike_accepts_the_checkpoint():
    m, twin = toy(), toy()
    busy(m)
    twin.restore(m.checkpoint())
    assert twin.state_digest() == m.state_digest() and twin.audit() == []
    # handles belong to the machine they come from
    assert all(f._m is twin for f in twin.files)


@pytest.mark.parametrize("other", [
    dict(nr_hugepages={T256: 1, T32: 4}),                       # another pool
    dict(nr_hugepages={T256: 2, T32: 4}, scheme="hstate_present"),  # another scheme
])
def test_restore_of_another_machines_checkpoint_is_refused_and_changes_nothing(other):
    m = toy()
    f, p, a = busy(m)
    foreign = toy(**other)
    busy(foreign)
    ck = foreign.checkpoint()
    d, version = m.state_digest(), m.version
    with pytest.raises(CheckpointMismatch, match="another machine") as info:
        m.restore(ck)
    assert isinstance(info.value, SimError) and isinstance(info.value, ValueError)
    assert m.state_digest() == d and m.version == version and m.audit() == []
    p.uffdio_continue(a + 16 * K4, K4)       # still works (was: KeyError / IndexError)
    with pytest.raises(CheckpointMismatch):
        m.state(ck)


def test_restore_of_something_else_is_a_type_error_and_changes_nothing():
    m = toy()
    busy(m)
    d = m.state_digest()
    for bad in ({"pt": 1}, None, 3, m._save()):
        with pytest.raises(TypeError, match="checkpoint"):
            m.restore(bad)
        assert m.state_digest() == d


def test_restore_ends_an_interrupted_operation():
    m = toy()
    ck = m.checkpoint()
    m._in_op = True                           # what an interrupt inside an operation leaves
    assert m.in_operation
    m.restore(ck)
    assert not m.in_operation
    m.spawn()


def test_state_of_a_checkpoint_reads_it_without_changing_the_machine():
    m = toy()
    f, p, a = busy(m)
    ck = m.checkpoint()
    before = m.state()
    ent = before.ent.copy()                  # the live view follows the machine
    p.munmap(a, T256)
    d = m.state_digest()
    st = m.state(ck)
    assert m.state_digest() == d
    assert st.mms == before.mms and st.version == before.version
    assert (st.ent[:ent.shape[0]] == ent).all() and st.mms != m.state().mms
    assert not st.ent.flags.writeable


def test_public_flags_follow_inject_and_the_sign_guard():
    m = toy(scheme="per_piece")
    assert m.armed_injection is None and m.warned_sign is False
    m.inject("after_pte_alloc")
    assert m.armed_injection == "after_pte_alloc"
    ck = m.checkpoint()
    m.inject(None)
    assert m.armed_injection is None
    m.restore(ck)
    assert m.armed_injection == "after_pte_alloc"


# --- the session and the renderer use only the machine's public API ----------------------
def _machine_private_names() -> set:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Machine()
    names = {n for n in vars(m) if n.startswith("_")}
    for klass in Machine.__mro__[:-1]:
        names |= {n for n in vars(klass) if n.startswith("_") and not n.startswith("__")}
    return names


def _private_accesses(path: pathlib.Path, names: set) -> list:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names:
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue      # the module's own object, not a Machine
            out.append("%s:%d: .%s" % (path.name, node.lineno, node.attr))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2 and \
                isinstance(node.args[1], ast.Constant) and node.args[1].value in names:
            out.append("%s:%d: %s(..., %r)" % (path.name, node.lineno, node.func.id,
                                               node.args[1].value))
    return out


def test_the_scan_finds_private_access(tmp_path):
    names = _machine_private_names()
    assert {"_files", "_mms", "_save", "_restore", "_inject", "_warned_sign", "_in_op"} <= names
    probe = tmp_path / "probe.py"
    probe.write_text("def f(m):\n    return m._mms, getattr(m, '_inject', None), self._x\n")
    hits = _private_accesses(probe, names)
    assert len(hits) == 2, hits


def test_session_and_renderer_use_only_the_machines_public_api():
    names = _machine_private_names()
    files = [PKG / "session.py"] + sorted((PKG / "render").glob("*.py"))
    bad = [hit for path in files for hit in _private_accesses(path, names)]
    assert bad == []


def test_session_checkpoints_are_the_machines():
    s = Session(scheme="per_piece", geometry="toy", nr_hugepages={T256: 2})
    assert s.checkpoint_positions == (0,)
    assert s.checkpoint_bytes() > 0
