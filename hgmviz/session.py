"""Layer 4: a session — one machine (or one per scheme), the history of operations, exact
undo / redo / reset / replay, and change notifications for views.

::

    s = Session(nr_hugepages={2 << 20: 8})                   # one machine, scheme "mainline"
    s.apply(Spawn("p")); s.apply(MemfdCreate("f", 4 << 20, 2 << 20))
    s.apply(Mmap("p", "f", 4 << 20, "a")); out = s.apply(Touch("p", ("a", 0x5000)))
    s.undo(); s.redo()
    cmp = Session(nr_hugepages={1 << 30: 1}, schemes=["per_piece", "thp_like"])  # side by side

What a step is.  :meth:`Session.apply` runs one operation (an :mod:`hgmviz.ops` dataclass, or
:class:`Inject`) on every machine of the session and records a :class:`Step`: the operation,
its :class:`~hgmviz.ops.Outcome` under each scheme, the kernel call path and the core's events.
An operation the kernel refuses (an errno, SIGBUS, a guard refusal) is a step like any other:
it is recorded with its error and the machine is unchanged, as the machine guarantees.  Two
failures do change the state, because the kernel keeps what it did: UFFDIO_CONTINUE returning
EAGAIN after mapping part of the range (:class:`~hgmviz.errors.PartialProgress`, kind
``"partial"``) and an injected error after page tables were allocated
(:class:`~hgmviz.errors.StateKept`, kind ``"state_kept"``).  Input no kernel would ever see —
an unknown label, a field of the wrong type, a value outside what the operation allows — is
not a step: :meth:`~Session.apply` raises :class:`InvalidOperation` and nothing changes.

Undo is exact.  The session keeps a checkpoint of the state after each step (only the page
tables in use are copied, not the pool's capacity; a step that changed nothing shares the
previous checkpoint), within a memory budget (``snapshot_budget``, 256 MiB): when the
checkpoints outgrow it, the oldest close neighbours are dropped and undo restores the nearest
earlier checkpoint and re-applies the steps after it (the machine is deterministic, so
re-applying gives the same state; the outcomes are compared to make sure).  The checkpoints of
the initial state, the current state and the one before it are always kept, so undoing one
step and drawing "what changed" never replays.  ``state_digest()`` is equal after any undo /
redo / goto to what it was at that position.

Notifications.  ``unsubscribe = s.subscribe(callback)``: ``callback(event)`` is called once
per change, after the change, with a :class:`SessionEvent` naming what happened (``apply``,
``undo``, ``redo``, ``goto``, ``reset``, ``load``, ``replay``), the new :attr:`Session.version`
(a counter that only grows, so ``(version, options)`` is a valid cache key for a drawing) and
the steps concerned.

Interrupting (KeyboardInterrupt) an apply, undo, redo, goto or replay puts every machine back
to the state before the call and re-raises; the history is unchanged.  :meth:`apply_many` (long
runs, one checkpoint at the end, a progress callback) keeps the steps completed before the
interrupt.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import time
from dataclasses import dataclass, field
from typing import Callable, Optional


from .comparison import watched_counters
from .mm import Machine
from .ops import (INJECT_POINTS, OPERATIONS, Inject, InvalidOperation, Labels, Outcome, World,
                  check_op, run_step)
from .ops import quiet as _quiet
from .scenario_file import Scenario, ScenarioError, read_scenario, save_session

__all__ = ["Session", "Step", "SessionEvent", "InvalidOperation", "ReplayMismatch", "Inject",
           "machine_checkpoint", "machine_restore", "checkpoint_as_snapshot",
           "OPERATIONS", "MACHINE_KEYS", "INJECT_POINTS", "check_op", "Labels",
           "STEP_KINDS", "session_from_scenario"]

#: Machine keyword arguments a session (and a scenario header) accepts.
MACHINE_KEYS = ("nr_hugepages", "geometry", "kernel", "guard", "errors", "hvo", "count_at",
                "lookup_first")

#: What a step did under one scheme.
STEP_KINDS = ("ok", "failed", "partial", "state_kept", "skipped")

DEFAULT_BUDGET = 256 << 20


# =========================================================================================
# Errors, records, events
# =========================================================================================
class ReplayMismatch(RuntimeError):
    """Re-applying a recorded step gave a different outcome (the simulator is meant to be
    deterministic, so this is a bug, or the history was edited)."""


@dataclass(frozen=True)
class Step:
    """One recorded operation and what it did under each scheme of the session.

    ``outcomes``/``kinds``/``call_paths``/``events``/``updates`` map a scheme name to the
    :class:`~hgmviz.ops.Outcome`, the kind (one of :data:`STEP_KINDS`), the kernel call
    path, the core's event arrays (``Machine.last_events``) and the counter updates
    (``Machine.last_counter_updates``) of that step."""

    op: object
    outcomes: dict
    kinds: dict
    call_paths: dict = field(default_factory=dict, compare=False)
    events: dict = field(default_factory=dict, compare=False, repr=False)
    narration: str = ""
    updates: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def outcome(self) -> Outcome:
        """The outcome under the session's first scheme."""
        return next(iter(self.outcomes.values()))

    @property
    def kind(self) -> str:
        return next(iter(self.kinds.values()))

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes.values())

    @property
    def statuses(self) -> dict:
        return {s: o.status for s, o in self.outcomes.items()}

    def __repr__(self):
        st = self.statuses
        vals = set(st.values())
        return "<Step %r: %s>" % (self.op, vals.pop() if len(vals) == 1 else
                                  ", ".join("%s %s" % kv for kv in st.items()))


@dataclass(frozen=True)
class SessionEvent:
    """What a subscriber is told: ``kind`` (apply, undo, redo, goto, reset, load, replay),
    the session ``version`` after the change, the ``position`` (steps applied) and the
    ``steps`` concerned (the one applied, the ones undone or redone)."""

    kind: str
    version: int
    position: int
    steps: tuple = ()

    @property
    def outcomes(self) -> dict:
        """Outcomes of the last step concerned, per scheme ({} for reset/load)."""
        return dict(self.steps[-1].outcomes) if self.steps else {}

    @property
    def outcome(self):
        return self.steps[-1].outcome if self.steps else None

    def __repr__(self):
        return "<SessionEvent %s version %d position %d, %d step(s)>" % (
            self.kind, self.version, self.position, len(self.steps))


# =========================================================================================
# Checkpoints: the machine's own (hgmviz.mm.checkpoint); the old names stay as aliases
# =========================================================================================
def machine_checkpoint(m: Machine):
    """``m.checkpoint()`` (the older name)."""
    return m.checkpoint()


def machine_restore(m: Machine, ckpt) -> None:
    """``m.restore(ckpt)`` (the older name)."""
    m.restore(ckpt)


def checkpoint_as_snapshot(m: Machine, ckpt):
    """A checkpoint is what the renderer's ``before`` takes: returns ``ckpt`` (the older
    name of a conversion that is no longer needed)."""
    return ckpt


class _CheckpointStore(dict):
    """``{position: checkpoint}`` that keeps :meth:`nbytes` (one checkpoint shared by several
    positions counts once) up to date as entries come and go, so the session's budget
    check costs O(1), not a sum over every checkpoint on every step."""

    def __init__(self):
        super().__init__()
        self._refs = {}
        self._nbytes = 0

    def __setitem__(self, key, ck):
        if key in self:
            del self[key]
        super().__setitem__(key, ck)
        n = self._refs.get(id(ck), 0)
        if n == 0:
            self._nbytes += ck["nbytes"]
        self._refs[id(ck)] = n + 1

    def __delitem__(self, key):
        ck = self[key]
        super().__delitem__(key)
        n = self._refs[id(ck)] - 1
        if n == 0:
            del self._refs[id(ck)]
            self._nbytes -= ck["nbytes"]
        else:
            self._refs[id(ck)] = n

    def nbytes(self) -> int:
        return self._nbytes


def _kind(out: Outcome, changed: bool) -> str:
    if out.status == "skipped":
        return "skipped"
    if out.ok:
        return "ok"
    if changed:
        return "partial" if out.status == "EAGAIN" else "state_kept"
    return "failed"


class _HybridMethod:
    """``Session.load(path)`` makes a new session; ``session.load(path)`` loads in place."""

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, owner):
        func = self.func

        @functools.wraps(func)
        def bound(*args, **kwargs):
            return func(owner, obj, *args, **kwargs)
        return bound


# =========================================================================================
# The session
# =========================================================================================
class Session:
    """Machines (one per scheme), the labels of the trace, the history and its position.

    ``Session(nr_hugepages=..., geometry=..., kernel=..., guard=..., errors=..., hvo=...,
    count_at=..., lookup_first=..., scheme="mainline" | schemes=[...], title="",
    description="", watch=[("f", 0)], snapshot_budget=256 MiB)``.
    """

    def __init__(self, *, schemes=None, scheme=None, title: str = "", description: str = "",
                 watch=(), snapshot_budget: int = DEFAULT_BUDGET, **machine_kwargs):
        unknown = sorted(set(machine_kwargs) - set(MACHINE_KEYS))
        if unknown:
            raise TypeError("Session() got unknown argument(s) %s; machine arguments: %s"
                            % (", ".join(unknown), ", ".join(MACHINE_KEYS)))
        if schemes is not None and scheme is not None:
            raise TypeError("give scheme= (one machine) or schemes=[...] (one per scheme), "
                            "not both")
        if schemes is None:
            schemes = [scheme or "mainline"]
        if isinstance(schemes, str):
            schemes = [schemes]
        schemes = list(schemes)
        if not schemes:
            raise ValueError("schemes must name at least one scheme")
        if len(set(schemes)) != len(schemes):
            raise ValueError("schemes must not repeat: %r" % (schemes,))
        defaults = {k: v.default for k, v in inspect.signature(Machine).parameters.items()
                    if k in MACHINE_KEYS}
        self.config = defaults | dict(machine_kwargs)       # every machine argument, explicit
        if self.config.get("nr_hugepages") is None:
            self.config["nr_hugepages"] = {}
        self.schemes = tuple(schemes)
        self.title = str(title)
        self.description = str(description)
        self.watch = tuple((str(lbl), int(off)) for lbl, off in watch)
        if isinstance(snapshot_budget, bool) or not isinstance(snapshot_budget, int) \
                or snapshot_budget < 0:
            raise ValueError("snapshot_budget must be a number of bytes >= 0")
        self.snapshot_budget = snapshot_budget
        self.machines = {s: Machine(scheme=s, **self.config) for s in self.schemes}
        self.worlds = {s: World(m) for s, m in self.machines.items()}
        self._history: list = []
        self._pos = 0
        self._version = 0
        self._subscribers: list = []
        self._notifying = False
        self._ckpt = _CheckpointStore()
        self.stats = {"checkpoints_taken": 0, "replayed_steps": 0, "checkpoint_seconds": 0.0,
                      "restore_seconds": 0.0}
        self._store_checkpoint(0)

    # ---- views -------------------------------------------------------------------------
    @property
    def machine(self) -> Machine:
        """The machine of the first scheme."""
        return self.machines[self.schemes[0]]

    @property
    def world(self) -> World:
        return self.worlds[self.schemes[0]]

    @property
    def geometry(self):
        return self.machine.geometry

    @property
    def history(self) -> tuple:
        """Every recorded step, including those undone (the redo tail)."""
        return tuple(self._history)

    @property
    def steps(self) -> tuple:
        """The steps applied to reach the current state."""
        return tuple(self._history[:self._pos])

    @property
    def position(self) -> int:
        return self._pos

    @property
    def version(self) -> int:
        """Grows by one at every change (apply, undo, redo, goto, reset, load, replay)."""
        return self._version

    @property
    def last(self) -> Optional[Step]:
        """The step that led to the current state (None at the start)."""
        return self._history[self._pos - 1] if self._pos else None

    @property
    def can_undo(self) -> bool:
        return self._pos > 0

    @property
    def can_redo(self) -> bool:
        return self._pos < len(self._history)

    def labels(self) -> Labels:
        """Labels defined in any of the session's worlds."""
        lab = Labels()
        for w in self.worlds.values():
            lab.procs |= set(w.procs)
            lab.files |= set(w.files)
            lab.addrs |= set(w.addrs)
        return lab

    def state_digest(self) -> str:
        """A hash of every machine's state (``Machine.state_digest()``, plus the armed
        injection and the WARN_ON_ONCE flag, which it leaves out) and the trace's labels."""
        h = hashlib.sha256()
        for s in self.schemes:
            m, w = self.machines[s], self.worlds[s]
            h.update(s.encode())
            h.update(m.state_digest().encode())
            h.update(repr((m.armed_injection, m.warned_sign)).encode())
            h.update(repr((sorted((k, p.pid) for k, p in w.procs.items()),
                           sorted((k, f.id) for k, f in w.files.items()),
                           sorted(w.addrs.items()))).encode())
        return h.hexdigest()

    def counters(self, pages=(0, 1)) -> dict:
        """``{scheme: {"f@0x2000": folio counters or None}}`` for the watched (file label,
        byte offset)s: the counters of the folio holding that byte, with ``page_mapcount``
        of ``pages`` and of the page holding the byte (None: the file has no folio there)."""
        return watched_counters({sc: self.worlds[sc] for sc in self.schemes}, self.watch,
                                pages)

    def before(self, scheme: Optional[str] = None) -> Optional[dict]:
        """The machine's checkpoint of the state before the last step (the renderer's
        ``before``; ``m.state(before)`` reads it), or None at the start."""
        if self._pos == 0:
            return None
        s = scheme or self.schemes[0]
        if s not in self.machines:
            raise ValueError("no scheme %r in this session; schemes: %s"
                             % (s, ", ".join(self.schemes)))
        self._ensure_prev()
        return self._ckpt[self._pos - 1]["machines"][s]

    # ---- subscribers -------------------------------------------------------------------
    def subscribe(self, callback: Callable[[SessionEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` after every change; returns a function that unsubscribes."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        token = [callback]
        self._subscribers.append(token)

        def unsubscribe():
            try:
                self._subscribers.remove(token)
            except ValueError:
                pass
        return unsubscribe

    def _notify(self, kind: str, steps=()):
        self._version += 1
        ev = SessionEvent(kind, self._version, self._pos, tuple(steps))
        errors = []
        self._notifying = True
        try:
            for token in list(self._subscribers):
                try:
                    token[0](ev)
                except Exception as e:      # one failing view must not starve the others
                    errors.append(e)
        finally:
            self._notifying = False
        if errors:
            raise errors[0]
        return ev

    def _check_not_notifying(self):
        if self._notifying:
            raise RuntimeError("a subscriber may not change the session while it is notified")

    # ---- checkpoints -------------------------------------------------------------------
    def _take(self) -> dict:
        t = time.perf_counter()
        ms = {s: m.checkpoint() for s, m in self.machines.items()}
        ck = {"machines": ms,
              "labels": {s: (dict(w.procs), dict(w.files), dict(w.addrs))
                         for s, w in self.worlds.items()},
              "nbytes": sum(c.nbytes for c in ms.values())}
        self.stats["checkpoints_taken"] += 1
        self.stats["checkpoint_seconds"] += time.perf_counter() - t
        return ck

    def _store_checkpoint(self, index: int, ck: Optional[dict] = None):
        self._ckpt[index] = ck if ck is not None else self._take()
        self._thin()

    def _protected(self) -> set:
        return {0, self._pos, self._pos - 1}

    @property
    def checkpoint_positions(self) -> tuple:
        """The history positions that have a checkpoint now (sorted)."""
        return tuple(sorted(self._ckpt))

    def checkpoint_bytes(self) -> int:
        """Memory held by the checkpoints (one shared by several positions counts once)."""
        return self._ckpt.nbytes()

    def _drop_redo_checkpoints(self):
        """Drop the checkpoints after the current position (the redo tail); none exist
        unless the history goes on past it, so the common case costs nothing."""
        if self._pos < len(self._history):
            for k in [k for k in self._ckpt if k > self._pos]:
                del self._ckpt[k]

    def _thin(self):
        """Drop checkpoints until they fit the budget: each time the one whose removal
        leaves the shortest replay (smallest gap between its neighbours)."""
        keep = self._protected()
        while self.checkpoint_bytes() > self.snapshot_budget:
            keys = sorted(self._ckpt)
            best, best_gap = None, None
            for i, k in enumerate(keys):
                if k in keep:
                    continue
                prev = keys[i - 1] if i > 0 else 0
                nxt = keys[i + 1] if i + 1 < len(keys) else len(self._history) + 1
                gap = nxt - prev
                if best_gap is None or gap < best_gap:
                    best, best_gap = k, gap
            if best is None:
                break
            del self._ckpt[best]

    def _restore_checkpoint(self, index: int):
        t = time.perf_counter()
        ck = self._ckpt[index]
        for s, m in self.machines.items():
            m.restore(ck["machines"][s])
            procs, files, addrs = ck["labels"][s]
            w = self.worlds[s]
            w.procs, w.files, w.addrs = dict(procs), dict(files), dict(addrs)
        self.stats["restore_seconds"] += time.perf_counter() - t

    def _set_views(self):
        """call_path and last_events of every machine: those of the step that led here."""
        st = self.last
        for s, m in self.machines.items():
            if st is None:
                _quiet(m)
            else:
                m.call_path = list(st.call_paths.get(s, ()))
                if s in st.events:
                    m.last_events = st.events[s]
                if s in st.updates:
                    m.last_counter_updates = dict(st.updates[s])

    # ---- running one operation on every machine ---------------------------------------
    def _run_all(self, op) -> tuple:
        outs, kinds, paths, events, updates = {}, {}, {}, {}, {}
        for s in self.schemes:
            w = self.worlds[s]
            m = w.machine
            v0 = m.version
            try:
                out = run_step(w, op)
            except KeyError as e:
                # a label that exists under another scheme, whose defining step failed here
                msg = e.args[0] if e.args else ""
                if len(self.schemes) == 1 or "labelled" not in str(msg):
                    raise
                out = Outcome("skipped", message="%s (the step that defined it failed under "
                              "%s)" % (msg, s))
                _quiet(m)
            changed = m.version != v0
            outs[s] = out
            kinds[s] = _kind(out, changed)
            paths[s] = tuple(m.call_path)
            events[s] = m.last_events
            updates[s] = dict(m.last_counter_updates)
        return outs, kinds, paths, events, updates

    def _validate(self, op):
        lab = self.labels()
        try:
            check_op(op, lab, self.geometry)
        except InvalidOperation:
            raise
        except Exception as e:       # pragma: no cover - defensive
            raise InvalidOperation(str(e)) from e

    def apply(self, op, narration: str = "") -> Outcome:
        """Run ``op`` on every machine; record it; return its outcome under the first scheme
        (all of them: ``session.last.outcomes``).  Raises :class:`InvalidOperation` for input
        no kernel would see; nothing is recorded then and nothing changes."""
        self._check_not_notifying()
        self._validate(op)
        mark = self._mark()
        try:
            outs, kinds, paths, events, updates = self._run_all(op)
        except (ValueError, TypeError, KeyError, NotImplementedError) as e:
            self._restore_checkpoint(self._pos)
            self._set_views()
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise InvalidOperation("%s: %s" % (type(op).__name__, msg)) from e
        except BaseException:
            self._restore_checkpoint(self._pos)
            self._set_views()
            raise
        step = Step(op, outs, kinds, paths, events, str(narration), updates)
        try:
            # a step that changed nothing (a refused operation) shares the checkpoint
            ck = self._ckpt[self._pos] if self._mark() == mark else self._take()
        except BaseException:
            self._restore_checkpoint(self._pos)
            self._set_views()
            raise
        # commit: drop the redo tail, record
        self._drop_redo_checkpoints()
        del self._history[self._pos:]
        self._history.append(step)
        self._pos += 1
        self._store_checkpoint(self._pos, ck)
        self._notify("apply", (step,))
        return step.outcome

    def apply_many(self, ops, progress: Optional[Callable[[int, int], None]] = None) -> list:
        """Apply several operations as consecutive steps, taking one checkpoint at the end
        (for long runs on big states).  ``progress(done, total)`` is called after each.  An
        interrupt (or an invalid operation) keeps the steps completed before it, leaves the
        session consistent and re-raises.  One ``apply`` notification, with every step."""
        self._check_not_notifying()
        ops = list(ops)
        if not ops:
            return []
        self._validate(ops[0])
        self._drop_redo_checkpoints()
        del self._history[self._pos:]
        start = self._pos
        done = []
        mark = self._mark()
        try:
            for i, op in enumerate(ops):
                if i:
                    self._validate(op)
                if i == len(ops) - 1 and self._pos not in self._ckpt:
                    self._ckpt[self._pos] = self._take()     # "before" of the last step
                try:
                    outs, kinds, paths, events, updates = self._run_all(op)
                except (ValueError, TypeError, KeyError, NotImplementedError) as e:
                    raise InvalidOperation("%s: %s" % (type(op).__name__, e)) from e
                step = Step(op, outs, kinds, paths, events, updates=updates)
                self._history.append(step)
                self._pos += 1
                done.append(step)
                mark = self._mark()
                if progress is not None:
                    progress(i + 1, len(ops))
        except BaseException:
            if self._mark() != mark:
                # interrupted inside an operation: rebuild the state after the completed steps
                self._pos = start
                self._restore_checkpoint(start)
                self._replay_range(start, start + len(done), checkpoint=False)
                self._pos = start + len(done)
            if self._pos not in self._ckpt:
                self._ckpt[self._pos] = self._take()
            self._ensure_prev()
            self._thin()
            self._set_views()
            if done:
                self._notify("apply", done)
            raise
        self._store_checkpoint(self._pos)
        self._notify("apply", done)
        return [s.outcome for s in done]

    def _ensure_prev(self):
        """Make sure the state before the last step is checkpointed (see :meth:`before`)."""
        prev = self._pos - 1
        if prev < 0 or prev in self._ckpt:
            return
        base = max(k for k in self._ckpt if k <= prev)
        try:
            self._restore_checkpoint(base)
            self._replay_range(base, prev, checkpoint=False)
            self._ckpt[prev] = self._take()
        finally:
            self._restore_checkpoint(self._pos)
            self._set_views()

    def _mark(self) -> tuple:
        """What tells whether a machine is exactly as its last completed step left it."""
        return tuple((m.version, m.in_operation, m.armed_injection, m.warned_sign,
                      len(w.procs), len(w.files), len(w.addrs))
                     for m, w in ((self.machines[s], self.worlds[s]) for s in self.schemes))

    # ---- moving along the history ------------------------------------------------------
    def _replay_range(self, a: int, b: int, checkpoint: bool = True, keep=()):
        """Re-apply steps ``a .. b-1`` from the state at position ``a``, comparing outcomes;
        checkpoint the positions in ``keep``, and others while the budget allows."""
        est = 0
        for i in range(a, b):
            step = self._history[i]
            outs = self._run_all(step.op)[0]
            self.stats["replayed_steps"] += 1
            if outs != step.outcomes:
                raise ReplayMismatch("step %d (%r) gave %s when re-applied, %s when recorded"
                                     % (i + 1, step.op, outs, step.outcomes))
            j = i + 1
            if j in self._ckpt:
                continue
            if j in keep or (checkpoint and j < b and
                             self.checkpoint_bytes() + est <= self.snapshot_budget):
                ck = self._take()
                est = ck["nbytes"]
                self._ckpt[j] = ck

    def _goto(self, target: int):
        """Move the machines to position ``target`` and keep checkpoints of ``target`` and
        ``target - 1`` (what a view needs to draw the last step's changes)."""
        pos = self._pos
        need = [k for k in (target - 1, target) if k >= 0]
        missing = [k for k in need if k not in self._ckpt]
        try:
            if not missing:
                if target != pos:
                    self._restore_checkpoint(target)
            else:
                first = missing[0]
                base = max(k for k in self._ckpt if k <= first)
                if base <= pos <= first:
                    base = pos            # the current state is the nearest: no restore
                elif base != pos:
                    self._restore_checkpoint(base)
                self._replay_range(base, target, keep=missing)
            self._pos = target
            self._thin()
        except BaseException:
            self._pos = pos
            self._restore_checkpoint(pos)
            self._set_views()
            raise
        self._set_views()

    def undo(self) -> Optional[Step]:
        """Go back one step; returns the step undone (None if there is none)."""
        self._check_not_notifying()
        if not self._pos:
            return None
        step = self._history[self._pos - 1]
        self._goto(self._pos - 1)
        self._notify("undo", (step,))
        return step

    def redo(self) -> Optional[Step]:
        """Re-apply the next undone step; returns it (None if there is none)."""
        self._check_not_notifying()
        if self._pos >= len(self._history):
            return None
        step = self._history[self._pos]
        self._goto(self._pos + 1)
        self._notify("redo", (step,))
        return step

    def goto(self, position: int):
        """Move to the state after ``position`` steps (0: the start), keeping the history."""
        self._check_not_notifying()
        if isinstance(position, bool) or not isinstance(position, int) or \
                not 0 <= position <= len(self._history):
            raise ValueError("position must be an int in 0..%d, not %r"
                             % (len(self._history), position))
        old = self._pos
        self._goto(position)
        lo, hi = sorted((old, position))
        self._notify("goto", self._history[lo:hi])

    def reset(self):
        """Back to the initial state with an empty history."""
        self._check_not_notifying()
        self._restore_checkpoint(0)
        ck0 = self._ckpt[0]
        self._ckpt = _CheckpointStore()
        self._ckpt[0] = ck0
        self._history = []
        self._pos = 0
        self._set_views()
        self._notify("reset")

    def replay(self) -> list:
        """Re-apply every step up to the current position from the initial state and check
        that each gives the outcome recorded (raises :class:`ReplayMismatch` otherwise, with
        the state as before).  Returns the steps."""
        self._check_not_notifying()
        pos = self._pos
        try:
            self._restore_checkpoint(0)
            self._replay_range(0, pos)
        except BaseException:
            self._restore_checkpoint(pos)
            self._set_views()
            raise
        if pos not in self._ckpt:
            self._ckpt[pos] = self._take()
        self._thin()
        self._set_views()
        self._notify("replay", self._history[:pos])
        return list(self._history[:pos])

    # ---- files ---------------------------------------------------------------------------
    def save(self, path):
        """Write the session (header and every step of the history) as a scenario file."""
        save_session(self, path)

    @_HybridMethod
    def load(cls, self, path):
        """``Session.load(path)``: a new session replaying the scenario file;
        ``session.load(path)``: replace this session's content (subscribers are kept and
        told ``load``).  A malformed file raises :class:`~hgmviz.scenarios.ScenarioError`
        and changes nothing."""
        sc = read_scenario(path)
        new = session_from_scenario(sc, snapshot_budget=(self.snapshot_budget if self is not None
                                                         else DEFAULT_BUDGET))
        if self is None:
            return new
        self._adopt(new)
        return self

    def _adopt(self, other: "Session"):
        self._check_not_notifying()
        for name in ("config", "schemes", "title", "description", "watch", "machines",
                     "worlds", "_history", "_pos", "_ckpt"):
            setattr(self, name, getattr(other, name))
        self._set_views()
        self._notify("load", tuple(self._history[:self._pos]))

    def __repr__(self):
        return "<Session %s%s: step %d of %d, version %d>" % (
            "/".join(self.schemes), (" %r" % self.title) if self.title else "", self._pos,
            len(self._history), self._version)


# =========================================================================================
# Replaying
# =========================================================================================
def session_from_scenario(sc: Scenario, snapshot_budget: int = DEFAULT_BUDGET) -> Session:
    """A new session with every step of ``sc`` applied; each step's outcome is checked
    against its ``expect`` (a mismatch is a :class:`ScenarioError` at that step's line)."""
    try:
        s = Session(schemes=list(sc.schemes), title=sc.title, description=sc.description,
                    watch=sc.watch, snapshot_budget=snapshot_budget, **sc.config)
    except (TypeError, ValueError) as e:
        raise ScenarioError("header: %s" % e, sc.path, 1) from None
    for i, st in enumerate(sc.steps):
        name = type(st.op).__name__
        try:
            s.apply(st.op, narration=st.narration)
        except InvalidOperation as e:
            raise ScenarioError("step %d (%s): %s" % (i + 1, name, e), sc.path, st.line,
                                getattr(e, "field", None), i + 1) from None
        got = s.last
        for scheme in sc.schemes:
            want = st.expected(scheme)
            out = got.outcomes[scheme]
            if out.status != want:
                line = sc.lines["steps"][i][1].get("expect", st.line) if i < len(
                    sc.lines.get("steps", ())) else st.line
                raise ScenarioError(
                    "step %d (%s): expected %s under %s, got %s%s" % (
                        i + 1, name, want, scheme, out.status,
                        (": " + out.message) if out.message else ""),
                    sc.path, line, "expect", i + 1)
    return s
