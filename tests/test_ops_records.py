"""The operation records (hgmviz.ops): one definition per operation, from which validation,
scenario files, the explorer's buttons, descriptions and the live cross-check derive."""
import dataclasses
import errno
import os

import pytest

from hgmviz import ops as O
from hgmviz.errors import PartialProgress, SigBus, SigSegv, StateKept, UserfaultPending
from hgmviz.kernelcheck import live
from hgmviz.kernelcheck.runner import SimWorld, check_against_rules, outcome_text, run_scenario
from hgmviz.kernelcheck.scenarios import SCENARIOS, CheckScenario, Scenario, get_scenario
from hgmviz.scenarios import (ScenarioError, is_scenario_path, load_scenario, parse_scenario,
                              read_scenario, session_text)
from hgmviz.session import Session
from hgmviz.units import format_size, parse_size


def test_every_operation_is_one_complete_record():
    assert list(O.OPERATIONS)[:3] == ["Spawn", "MemfdCreate", "Fallocate"]
    for name, cls in O.OPERATIONS.items():
        sp = cls.spec
        assert sp.name == name and sp.word and sp.text and sp.call_path and sp.log
        for f in dataclasses.fields(cls):
            assert isinstance(f.metadata["kind"], O.fields.Kind), (name, f.name)


def test_a_malformed_declaration_is_refused_at_import():
    with pytest.raises(ValueError, match="names 'nope', which is not a field"):
        @O.operation(word="x", text="x", call_path="x", call="proc.x(nope)", log="x")
        class Bad(O.Operation):
            proc: str = O.arg(O.fields.PROC)
    assert "Bad" not in O.OPERATIONS


@pytest.mark.parametrize("exc, status, extra", [
    (PartialProgress(8192, OSError(errno.EFAULT, "x")), "EAGAIN", {"mapped": 8192, "cause": "EFAULT", "kept": True}),
    (StateKept(errno.ENOMEM, "x"), "ENOMEM", {"kept": True}),
    (SigBus(0x1000, "x"), "SIGBUS", {}),
    (SigSegv(0x1000), "SIGSEGV", {}),
    (UserfaultPending(0x1000, "minor"), "userfault", {"cause": "minor"}),
    (OSError(errno.EINVAL, "x"), "EINVAL", {}),
])
def test_typed_errors_map_to_outcomes_through_one_table(exc, status, extra):
    out = O.outcome_of(exc)
    assert out.status == status
    for k, v in extra.items():
        assert getattr(out, k) == v
    assert O.outcome_of(KeyError("x")) is None


def test_the_live_machine_raises_the_typed_partial_progress():
    with pytest.raises(PartialProgress) as ei:
        live._result({"errno": errno.EAGAIN, "msg": "m", "mapped": 0x200000}, 1, "continue")
    assert outcome_text(O.outcome_of(ei.value)) == "EAGAIN mapped=0x200000"
    with pytest.raises(OSError) as ei:
        live._result({"errno": errno.EEXIST, "msg": "m", "mapped": -17}, 1, "continue")
    assert not isinstance(ei.value, PartialProgress)
    assert outcome_text(O.outcome_of(ei.value)) == "EEXIST"


@pytest.mark.parametrize("name", ["uffd_continue_not_in_cache", "fork_uffd_minor_child",
                                  "map_noreserve", "madv_dontneed_hole"])
def test_cross_check_scenarios_are_operation_records_the_simulator_runs(name):
    sc = get_scenario(name)
    assert isinstance(sc, CheckScenario) and Scenario is CheckScenario
    assert all(isinstance(st.op, O.Operation) for st in sc.steps)
    run = run_scenario(SimWorld(), sc)
    assert run.status == "ran" and check_against_rules(sc, run) == []


def test_cross_check_step_lines_read_as_calls():
    sc = get_scenario("pmd_sharing")
    lines = [st.describe() for st in sc.steps]
    assert lines[:3] == ["f = memfd_create(size=1G, hstate=2M)", "p = spawn()",
                         "a = p.mmap(f, length=1G, offset=0, addr=64G, noreserve)"]
    assert "c.touch(a+0x601000, write)" in lines
    assert O.Touch("p", ("a", 0), False).describe_call() == "p.touch(a, read)"


def test_the_scenario_prologue_is_the_three_explicit_steps():
    from hgmviz.kernelcheck.scenarios import mmap, memfd, prologue, spawn
    assert get_scenario("fault").steps[:3] == (
        memfd("f", 4 << 20), spawn("p"),
        mmap("p", "a", "f", 4 << 20, maps={"A0": None, "A1": None}, pool=(0, +2),
             why="MAP_SHARED reserves one page per hugepage of the range (hugetlb_reserve_pages)"))
    assert prologue(4 << 20, 2 << 20, bind="s", hstate=1 << 30, addr=1 << 36) == (
        memfd("f", 4 << 20, hstate=1 << 30), spawn("p"),
        mmap("p", "s", "f", 2 << 20, addr=1 << 36))
    assert prologue(4 << 20) != (memfd("f", 4 << 20), spawn("p"), mmap("p", "a", "f", 2 << 20))


def test_one_size_parser_and_formatter():
    assert parse_size("2 MiB") == parse_size("2M") == 2 << 20
    assert [format_size(n) for n in (4096, 16773120, 3)] == ["4 KiB", "16,380 KiB", "3 B"]
    assert [format_size(n, "toml") for n in (2 << 20, 3)] == ["2 MiB", "3"]
    assert [format_size(n, "short") for n in (0, 2052 << 10, 64 << 30, 0x1001)] == \
        ["0", "2052K", "64G", "0x1001"]
    for n in (0, 1, 4096, 3 << 30, 12345):
        assert parse_size(format_size(n, "toml")) == n


# --- issue 17 items 8 and 10 -------------------------------------------------------------------
HEAD = 'title = "t"\n'


@pytest.mark.parametrize("value", ["[" * 1000 + "]" * 1000, "{a=" * 1000 + "1" + "}" * 1000])
def test_deeply_nested_toml_is_a_file_line_error(tmp_path, value):
    text = HEAD + "\n\nx = " + value + "\n"
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(text, "deep.toml")
    assert ei.value.line == 4 and str(ei.value).startswith("deep.toml:4: ")
    assert "nested more than" in str(ei.value)
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=r"deep.toml:4: "):
        Session.load(path)
    from hgmviz.explain import main
    assert main([str(path), "--format", "text"]) != 0


def test_brackets_in_strings_and_comments_do_not_count_as_nesting():
    text = HEAD + 'description = "%s"  # %s\n' % ("[" * 100, "{" * 100)
    assert parse_scenario(text).title == "t"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    s = load_scenario("tour")
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + session_text(s).encode())
    sc = read_scenario(path)
    assert sc.title == s.title and len(sc.steps) == len(s.steps)


def test_a_file_named_like_a_shipped_scenario_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("tour")                              # a folder called tour
    (tmp_path / "pmd_sharing").write_text("not toml [")
    assert not is_scenario_path("tour") and is_scenario_path("./tour")
    assert is_scenario_path("x.toml") and is_scenario_path("dir/x")
    assert load_scenario("tour").title == read_scenario(
        __import__("hgmviz.scenarios", fromlist=["x"]).scenario_path("tour")).title
    assert load_scenario("pmd_sharing").position > 0
    from hgmviz.explain import main
    assert main(["pmd_sharing", "--format", "text", "-o", str(tmp_path / "out.txt")]) == 0
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("./tour")


def test_a_world_that_cannot_start_is_skipped_by_its_typed_error():
    from hgmviz.kernelcheck.pool import CannotRun

    class NoRoot(SimWorld):
        def start(self, sc):
            raise CannotRun("no root", "run as root")

    class Broken(SimWorld):
        def start(self, sc):
            raise RuntimeError("CannotRun")          # the name in a message is not the type

    run = run_scenario(NoRoot(), get_scenario("fault"))
    assert (run.status, run.reason) == ("skipped", "cannot run: no root; run as root")
    run = run_scenario(Broken(), get_scenario("fault"))
    assert run.status == "error" and "RuntimeError" in run.reason and not run.steps
