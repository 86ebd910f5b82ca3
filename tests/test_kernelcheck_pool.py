"""The live check's pool bookkeeping without root (issue 17 items 1 and 10).

The rule: a setting is given back only if it still reads what the check left; anything else is
somebody else's change, and it stays.  Both the driver (``PoolKeeper.restore``) and the guardian
(the process that restores after the driver dies) follow it.  Here the "settings" are plain
files, so these run anywhere; tests/test_kernelcheck_live.py runs the same rule on the real pool
as root, with a concurrent writer.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hgmviz.kernelcheck import pool

WORKER = pool.WORKER


def _setting(tmp_path, name, value):
    p = tmp_path / name
    p.write_text("%d\n" % value)
    return str(p)


def _read(path):
    with open(path) as f:
        return int(f.read())


def test_restore_gives_back_a_setting_that_reads_what_the_check_left(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 7)
    k = pool.PoolKeeper(-1)
    k.changes.append(pool.Change(path, before=5, target=7, got=7))
    k.restore()
    assert _read(path) == 5
    assert k.warnings == [] and k.left == [] and k.problems == []


def test_restore_leaves_a_setting_somebody_else_changed_and_says_so(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 9)       # the check left 7; someone wrote 9
    k = pool.PoolKeeper(-1)
    k.changes.append(pool.Change(path, before=5, target=7, got=7))
    k.restore()
    assert _read(path) == 9
    assert len(k.left) == 1 and k.left == k.warnings
    assert "set to 9 by someone else" in k.left[0] and "left as it is" in k.left[0]


def test_restore_never_lowers_below_a_smaller_outside_value(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 6)       # someone shrank it to 6 (below 7)
    k = pool.PoolKeeper(-1)
    k.changes.append(pool.Change(path, before=5, target=7, got=7))
    k.restore()
    assert _read(path) == 6 and len(k.left) == 1


def test_a_disowned_change_is_never_given_back(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 7)
    k = pool.PoolKeeper(-1)
    k.changes.append(pool.Change(path, before=5, target=7, got=7, disowned=True))
    k.restore()
    assert _read(path) == 7


def test_a_write_that_reads_back_outside_its_range_is_someone_elses(tmp_path, monkeypatch):
    """The read-back after the write sees a value that neither the old value nor the target
    explains: the check backs off (CannotRun) and will not give that setting back."""
    path = _setting(tmp_path, "nr_hugepages", 5)
    real_write = pool._write

    def racing_write(p, value):
        real_write(p, value)
        real_write(p, 11)                     # the administrator writes right after us

    monkeypatch.setattr(pool, "_write", racing_write)
    k = pool.PoolKeeper(-1)
    with pytest.raises(pool.CannotRun) as ei:
        k._change(path, 5, lambda v: v + 2)
    assert "backs off" in str(ei.value) and "then read 11" in str(ei.value)
    monkeypatch.setattr(pool, "_write", real_write)
    k.restore()
    assert _read(path) == 11


def test_a_change_before_the_write_is_kept_and_reported(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 8)       # the plan read 5; now it reads 8
    k = pool.PoolKeeper(-1)
    ch = k._change(path, 5, lambda v: v + 2)
    assert (ch.before, ch.target, ch.got) == (8, 10, 10) and _read(path) == 10
    assert "changed from 5 to 8 before the check wrote it" in k.warnings[0]
    k.restore()
    assert _read(path) == 8                            # their 3 pages stay


# --- the guardian ---------------------------------------------------------------------------
def _guardian(lines, close_stdout=False):
    g = subprocess.Popen([sys.executable, "-I", "-S", WORKER, "guardian"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    if close_stdout:
        g.stdout.close()                      # the driver died before reading "armed"
    else:
        assert g.stdout.readline().strip() == "armed"
    g.stdin.write("".join(lines))
    g.stdin.close()                           # the driver is gone
    err = g.stderr.read()
    assert g.wait(10) == 0
    return err


def _line(path, before, target, got=None, disowned=False):
    return json.dumps({"path": path, "before": before, "target": target, "got": got,
                       "disowned": disowned}) + "\n"


def test_guardian_gives_back_what_the_driver_left(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 7)
    err = _guardian([_line(path, 5, 7), _line(path, 5, 7, got=7)])
    assert err == "" and _read(path) == 5


def test_guardian_gives_back_an_announced_write_the_driver_could_not_confirm(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 6)       # the kernel found 1 of 2, then SIGKILL
    err = _guardian([_line(path, 5, 7)])
    assert err == "" and _read(path) == 5


def test_guardian_leaves_an_outside_change_and_names_it(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 12)
    err = _guardian([_line(path, 5, 7), _line(path, 5, 7, got=7)])
    assert _read(path) == 12
    assert "set to 12 by someone else" in err and "Traceback" not in err


def test_guardian_disarmed_does_nothing(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 7)
    err = _guardian([_line(path, 5, 7, got=7), "disarm\n"])
    assert err == "" and _read(path) == 7


@pytest.mark.parametrize("lines", [[], ["{\"path\": \"/x\", \"bef"], ["not json\n"]],
                         ids=["nothing", "cut-short", "garbage"])
def test_guardian_prints_no_traceback_when_the_driver_dies_early(lines):
    """Issue 17 item 10: end of file before any change, or half a line, is not an error."""
    assert _guardian(lines) == ""


def test_guardian_prints_no_broken_pipe_when_nobody_reads_armed(tmp_path):
    path = _setting(tmp_path, "nr_hugepages", 7)
    err = _guardian([_line(path, 5, 7, got=7)], close_stdout=True)
    assert err == "" and _read(path) == 5

