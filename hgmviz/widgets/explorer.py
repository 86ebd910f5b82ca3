"""Layer 6: the interactive explorer — controls in, one operation out, the diagram back.

``explore(...)`` and ``compare(...)`` return an :class:`Explorer` (it shows itself in Jupyter
and Voila; ``.widget`` is the ipywidgets tree).  The explorer holds no simulator state of its
own: a button's callback reads the validated controls, builds one :mod:`hgmviz.ops`
operation and hands it to the :class:`~hgmviz.session.Session`; the session runs it on its
machine(s), records it and notifies the explorer, which then redraws the diagram, the
counters table and the log together (DESIGN.md, "One click, one redraw").  What the kernel
accepts is decided by the machine: the controls only *snap* the address and the length to
the granularities a VMA can be mapped at, so that a student does not make an illegal request
by accident; the "allow illegal values" toggle lets one type any value and see the kernel's
error.

Changing the scheme, the guard or the error policy builds a new session with that setting
and re-applies the trace (the operations so far) to it: the same clicks under other rules.
"""
from __future__ import annotations

import contextlib
import time
from collections import OrderedDict

import ipywidgets as W

from .. import ops as O
from ..render import DotNotFound, draw, draw_compare
from ..scenarios import load_scenario, parse_size
from ..schemes import SCHEMES
from ..session import InvalidOperation, Session
from . import views
from .controls import ControlsMixin, legal_granularities  # noqa: F401  (public name)
from .drill_ui import DrillMixin

__all__ = ["Explorer", "explore", "compare", "legal_granularities", "GUARD_CHOICES",
           "ERROR_CHOICES", "OPERATION_BUTTONS"]

#: The guard selector: (shown, value for ``Machine(guard=...)``).
GUARD_CHOICES = (("none (wraps)", "none"), ("INT_MAX/2 (T9 proposal)", "int_max_half"),
                 ("sign (v2 35/46, as meant)", "sign"),
                 ("sign, v2 35/46 as posted (check after the lookup, leaks)", "sign_posted"))
#: The error-policy selector.
ERROR_CHOICES = (("proposed: ENOMEM / SIGBUS", "proposed"),
                 ("v2: EFAULT / SIGBUS, fork fails", "v2"))

#: The operation buttons: (key, label, tooltip), from the operation records
#: (:func:`hgmviz.ops.buttons`); the tooltip names the kernel path.
_BUTTONS = {key: (cls, preset, row) for key, _l, _t, cls, preset, row in O.buttons()}
OPERATION_BUTTONS = tuple((key, label, tip) for key, label, tip, *_ in O.buttons())


def _needs(key: str) -> str:
    """What a button needs selected: "vma" (it takes an address), "proc", "file" or ""."""
    forms = {f.metadata.get("form") for f in O.fields_of(_BUTTONS[key][0])}
    return next((n for n, form in (("vma", "addr"), ("proc", "proc"), ("file", "file"))
                 if form in forms), "")


_DEFAULT_POOL = {"toy": {1 << 18: 2}, "x86_64": {2 << 20: 4, 1 << 30: 1},
                 "x86_64-5level": {2 << 20: 4, 1 << 30: 1}}


def _close_tree(w):
    for c in getattr(w, "children", ()):
        _close_tree(c)
    w.close()


def _tip(widget, text):
    widget.tooltip = text
    return widget


class Explorer(ControlsMixin, DrillMixin):
    """Widgets over one :class:`~hgmviz.session.Session`.

    ``compare=False``: one scheme's diagram (the scheme selector picks it; a scheme the
    session lacks rebuilds the session with it).  ``compare=True``: every scheme of the
    session side by side, redrawn together.  ``base``: the position Reset returns to
    (default: where the explorer opened).  ``redraw_cache``: how many drawn states to keep
    (undo / redo to a state drawn recently costs no new layout)."""

    def __init__(self, session: Session, *, compare: bool = False, theme: str = "light",
                 base=None, redraw_cache: int = 32, undo_floor: int = 0):
        self.compare = bool(compare)
        self.undo_floor = int(undo_floor)   # undo never goes below this position
        self.theme = theme
        self.session = None
        self._unsubscribe = None
        self._notes = []                    # [(session, position, message)] rejected inputs
        self._prev_counters = None
        self._quiet = False                 # a run of several steps: redraw once at the end
        self._syncing = False
        self._cache = OrderedDict()
        self._cache_size = int(redraw_cache)
        self.timings = []                   # seconds per redraw (op excluded), for the bench
        self._scale = None
        self._scale_task = None
        self._len_gran = None
        self._legend = ()
        self._build()
        self.attach(session, base=base)

    # =====================================================================================
    # Building the widget tree
    # =====================================================================================
    def _build(self):
        lay = W.Layout
        short = {"description_width": "initial"}
        # -- configuration ----------------------------------------------------------------
        if self.compare:
            self.w_scheme = W.SelectMultiple(options=list(SCHEMES), description="schemes",
                                             rows=len(SCHEMES), style=short,
                                             layout=lay(width="230px"))
            _tip(self.w_scheme, "Accounting schemes drawn side by side (Ctrl/Shift+click or "
                 "Shift+arrows to pick several); changing them re-applies the trace")
        else:
            self.w_scheme = W.Dropdown(options=list(SCHEMES), description="scheme",
                                       style=short, layout=lay(width="220px"))
            _tip(self.w_scheme, "Accounting scheme: mainline, or one of the thread's HGM "
                 "schemes; changing it re-applies the trace under the new scheme")
        self.w_guard = _tip(W.Dropdown(options=list(GUARD_CHOICES), description="guard",
                                       style=short, layout=lay(width="250px")),
                            "Refcount guard: none (the count wraps), INT_MAX/2 (James, T9) or "
                            "the sign check of HGM v2 35/46; re-applies the trace")
        self.w_errors = _tip(W.Dropdown(options=list(ERROR_CHOICES), description="errors",
                                        style=short, layout=lay(width="290px")),
                             "What a guard refusal returns: the thread's proposal (ENOMEM "
                             "for UFFDIO_CONTINUE, SIGBUS for a fault) or v2's (EFAULT; fork "
                             "fails); re-applies the trace")
        for w in (self.w_scheme, self.w_guard, self.w_errors):
            w.observe(self._on_config, names="value")
        # -- what the operation acts on ---------------------------------------------------
        self.w_proc = _tip(W.Dropdown(description="process", style=short,
                                      layout=lay(width="200px")),
                           "The process whose syscalls the buttons make")
        self.w_vma = _tip(W.Dropdown(description="VMA", style=short,
                                     layout=lay(width="520px")),
                          "The VMA of the selected process that the address is in")
        self.w_file = _tip(W.Dropdown(description="file", style=short,
                                      layout=lay(width="200px")),
                           "The hugetlbfs file for close and mmap")
        self.w_gran = _tip(W.Dropdown(description="granularity", style=short,
                                      layout=lay(width="190px")),
                           "Address and length move in steps of this size: the entry sizes "
                           "that may map this VMA (the hugepage size; with HGM also 4 KiB and "
                           "the sizes between)")
        self.w_addr = _tip(W.IntSlider(description="offset", min=0, max=0, step=1,
                                       readout_format="#x", continuous_update=False,
                                       style=short, layout=lay(width="420px")),
                           "Offset of the address in the VMA (hex), a multiple of the "
                           "granularity; arrow keys move one step")
        self.w_len = _tip(W.IntSlider(description="length", min=1, max=1, step=1,
                                      readout_format="#x", continuous_update=False,
                                      style=short, layout=lay(width="420px")),
                          "Length of the range (hex bytes), a multiple of the granularity")
        self.w_where = W.HTML(layout=lay(width="auto"))
        self.w_illegal = _tip(W.Checkbox(description="allow illegal values", indent=False,
                                         layout=lay(width="auto")),
                              "Type any address and length (hex, decimal or sizes like "
                              "'2 MiB'), even unaligned or outside every VMA, to see the "
                              "kernel's error")
        self.w_addr_text = _tip(W.Text(description="address", style=short,
                                       placeholder="0x... or a+0x5000",
                                       layout=lay(width="260px", display="none")),
                                "Any address: an integer (0x... or decimal), or a mapping "
                                "label plus an offset (a+0x5000)")
        self.w_len_text = _tip(W.Text(description="length", style=short,
                                      placeholder="4096, 0x1000 or 4 KiB",
                                      layout=lay(width="220px", display="none")),
                               "Any length: an integer or a size such as '4 KiB'")
        for w in (self.w_proc, self.w_vma, self.w_gran):
            w.observe(self._on_target, names="value")
        for w in (self.w_addr, self.w_len):
            w.observe(self._on_slider, names="value")
        self.w_illegal.observe(self._on_illegal, names="value")
        self.w_fit = _tip(W.Checkbox(description="fit the diagram to the window", value=True,
                                     indent=False, layout=lay(width="auto")),
                          "Shrink a large diagram to the window (untick: its natural size, "
                          "with scroll bars)")
        self.w_fit.observe(lambda _c: self.redraw(), names="value")
        # -- buttons ----------------------------------------------------------------------
        self.buttons = {}
        for key, label, tip in OPERATION_BUTTONS:
            b = W.Button(description=label, tooltip=tip, layout=lay(width="auto"))
            b.on_click(lambda _b, k=key: self.do(k))
            self.buttons[key] = b
        self.b_undo = W.Button(description="undo", icon="undo", tooltip="Undo the last step "
                               "(session.undo: the state before it, byte for byte)",
                               layout=lay(width="auto"))
        self.b_redo = W.Button(description="redo", icon="repeat", tooltip="Redo the step "
                               "undone last (session.redo)", layout=lay(width="auto"))
        self.b_reset = W.Button(description="reset", icon="fast-backward",
                                tooltip="Back to where this explorer started", layout=lay(
                                    width="auto"))
        self.b_undo.on_click(lambda _b: self._nav("undo"))
        self.b_redo.on_click(lambda _b: self._nav("redo"))
        self.b_reset.on_click(lambda _b: self._nav("reset"))
        # -- displays ---------------------------------------------------------------------
        self.w_css = W.HTML(views.CSS)
        self.w_title = W.HTML()
        self.w_title.add_class("hgmviz-title")
        self.w_status = W.HTML()
        self.w_status.add_class("hgmviz-status")
        self.diagram = W.HTML(layout=lay(width="100%", overflow="auto"))
        self.diagram.add_class("hgmviz-diagram-box")
        self.counters = W.HTML(layout=lay(width="100%" if self.compare else "auto"))
        self.counters.add_class("hgmviz-counters-box")
        self.log = W.HTML(layout=lay(max_height="300px", overflow="auto", width="100%"))
        self.log.add_class("hgmviz-log-box")
        # -- the overflow drill -----------------------------------------------------------
        self.w_drill_info = W.HTML()
        self.b_drill_step = W.Button(description="drill: next step", tooltip="The drill's "
                                     "next step: a new mapping (mmap + MADV_SPLIT + "
                                     "UFFDIO_REGISTER) or one more 4 KiB UFFDIO_CONTINUE",
                                     layout=lay(width="auto"))
        self.b_drill_run = W.Button(description="drill: run to guard or wrap",
                                    tooltip="Repeat the drill's steps (a whole mapping at a "
                                    "time) until the guard refuses or the refcount wraps; "
                                    "each step is recorded and can be undone",
                                    layout=lay(width="auto"))
        self.b_drill_step.on_click(lambda _b: self.drill_step())
        self.b_drill_run.on_click(lambda _b: self.drill_run())
        self.w_scale_progress = W.IntProgress(description="VMAs", min=0, max=1, value=0,
                                              style=short, layout=lay(width="420px"))
        self.w_scale_progress.tooltip = "VMAs of 1 GiB mapped at 4 KiB so far"
        self.b_scale_run = W.Button(description="scale run: start / continue", icon="play",
                                    tooltip="At x86-64 geometry, map a 1 GiB folio at 4 KiB "
                                    "VMA after VMA until the guard refuses or the refcount "
                                    "wraps, in chunks (a machine of its own: gigabytes of "
                                    "page tables); Stop ends it between two chunks",
                                    layout=lay(width="auto"))
        self.b_scale_stop = W.Button(description="stop", icon="stop", disabled=True,
                                     tooltip="Stop the scale run after the current chunk; "
                                     "start / continue resumes it", layout=lay(width="auto"))
        self.b_scale_release = W.Button(description="free its memory", icon="trash",
                                        tooltip="Drop the scale run's machine (its page "
                                        "tables); the numbers stay", layout=lay(width="auto"))
        self.w_scale_info = W.HTML()
        self.b_scale_run.on_click(lambda _b: self.scale_start())
        self.b_scale_stop.on_click(lambda _b: self.scale_stop())
        self.b_scale_release.on_click(lambda _b: self.scale_release())
        drill = W.VBox([
            W.HTML("<b>Toy geometry</b>: 64 pieces of 4 KiB a hugepage, INT_MAX = 127. Each "
                   "step goes through the session (undo works)."),
            W.HBox([self.b_drill_step, self.b_drill_run]), self.w_drill_info,
            W.HTML("<b>x86-64</b>: James's count (T9) for real, 1 GiB at 4 KiB, on a machine "
                   "of its own."),
            W.HBox([self.b_scale_run, self.b_scale_stop, self.b_scale_release]),
            self.w_scale_progress, self.w_scale_info])
        self.w_legend = W.HTML()
        self.w_legend_box = W.Accordion(children=[self.w_legend], selected_index=None)
        self.w_legend_box.set_title(0, "How to read the diagram")
        self.w_drill = W.Accordion(children=[drill], selected_index=None)
        self.w_drill.set_title(0, "Overflow drill")
        # -- layout -----------------------------------------------------------------------
        ops_row1 = W.HBox([self.buttons[k] for k, b in _BUTTONS.items() if b[2] == 1])
        ops_row2 = W.HBox([self.buttons[k] for k, b in _BUTTONS.items() if b[2] != 1]
                          + [W.HTML("&nbsp;&nbsp;"), self.b_undo, self.b_redo, self.b_reset])
        config = W.HBox([self.w_scheme, self.w_guard, self.w_errors])
        target = W.HBox([self.w_proc, self.w_vma, self.w_file])
        where = W.HBox([self.w_gran, self.w_addr, self.w_len])
        free = W.HBox([self.w_illegal, self.w_addr_text, self.w_len_text, self.w_where])
        view = W.HBox([self.w_fit])
        if self.compare:
            body = W.VBox([self.diagram, self.counters])
        else:
            # the counters keep their natural width (never clipped); in a narrow window
            # they wrap below the diagram, which scrolls rather than shrinking its text
            body = W.HBox([W.Box([self.diagram], layout=lay(flex="1 1 480px", width="auto",
                                                            min_width="0")),
                           W.Box([self.counters], layout=lay(flex="0 0 auto",
                                                             max_width="100%",
                                                             overflow="auto"))],
                          layout=lay(flex_flow="row wrap", align_items="flex-start",
                                     width="100%"))
        self.widget = W.VBox([self.w_css, self.w_title, config, target, where, free, ops_row1,
                              ops_row2, self.w_status, view, body, self.w_legend_box,
                              self.log, self.w_drill])
        self.widget.add_class("hgmviz-explorer")
        if self.compare:
            self.widget.add_class("hgmviz-compare")

    # Jupyter / Voila display the widget tree
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _all_widgets(self):
        return [self.w_scheme, self.w_guard, self.w_errors, self.w_proc, self.w_vma,
                self.w_file, self.w_gran, self.w_addr, self.w_len, self.w_where,
                self.w_title, self.w_status, self.diagram, self.w_legend, self.counters, self.log,
                self.b_undo, self.b_redo, self.b_reset, self.w_drill_info,
                self.b_drill_step, self.b_drill_run, self.w_illegal, self.w_addr_text,
                self.w_len_text, self.w_fit] + list(self.buttons.values())

    @contextlib.contextmanager
    def _held(self, widgets=None):
        """Every widget's changes go out together at the end (one sync per action)."""
        with contextlib.ExitStack() as stack:
            for w in (widgets or self._all_widgets()):
                stack.enter_context(w.hold_sync())
            yield

    # =====================================================================================
    # The session
    # =====================================================================================
    def attach(self, session: Session, base=None):
        """Show ``session`` (unsubscribing from the previous one)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.session = session
        self.base = session.position if base is None else int(base)
        self._prev_counters = None
        self._unsubscribe = session.subscribe(self._on_session)
        self._syncing = True
        try:
            cfg = session.config
            if self.compare:
                self.w_scheme.value = tuple(session.schemes)
            prev = getattr(self, "view_scheme", None)
            self.view_scheme = prev if prev in session.schemes else session.schemes[0]
            if not self.compare:
                self.w_scheme.value = self.view_scheme
            self.w_guard.value = cfg.get("guard") or "none"
            self.w_errors.value = cfg.get("errors", "proposed")
        finally:
            self._syncing = False
        self.redraw()

    def _on_session(self, event):
        if not self._quiet:
            self.redraw()

    def close(self):
        """Stop following the session and close every widget (a notebook that re-runs the
        cell makes a new explorer; the old one would otherwise keep redrawing)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.scale_stop()
        _close_tree(self.widget)

    @property
    def machine(self):
        """The machine drawn (explorer) or the first one (comparison)."""
        return self.session.machines[self.view_scheme]

    @property
    def world(self):
        return self.session.worlds[self.view_scheme]

    # =====================================================================================
    # Controls → one operation
    # =====================================================================================
    def _label_of_file(self, fid):
        for lab, f in self.world.files.items():
            if f.id == fid:
                return lab, f
        return None, None

    def _vmas(self):
        p = self.world.procs.get(self.w_proc.value)
        if p is None or not p.alive:
            return []
        return list(p.vmas)

    def _selected_vma(self):
        for v in self._vmas():
            if v.start == self.w_vma.value:
                return v
        return None

    def _new_label(self, stem, taken):
        if stem not in taken:
            return stem
        i = 2
        while "%s%d" % (stem, i) in taken:
            i += 1
        return "%s%d" % (stem, i)

    def _addr_arg(self, addr: int):
        """An address as the trace records it: ``(mapping label, offset)`` from the nearest
        mapping label at or below it, else the integer."""
        best = None
        for lab, a in self.world.addrs.items():
            if a <= addr and (best is None or a > best[1]):
                best = (lab, a)
        if best is None:
            return addr
        return best[0] if addr == best[1] else (best[0], addr - best[1])

    def _parse_addr(self, text: str):
        text = text.strip()
        if "+" in text:
            lab, off = text.split("+", 1)
            lab = lab.strip()
            if lab in self.world.addrs:
                return (lab, self._parse_int(off, "offset"))
        if text in self.world.addrs:
            return text
        return self._parse_int(text, "address")

    @staticmethod
    def _parse_int(text: str, what: str) -> int:
        text = text.strip()
        try:
            return int(text, 0)
        except ValueError:
            pass
        try:
            return parse_size(text)
        except ValueError:
            raise ValueError("%s %r is not a number: write 0x..., a decimal or a size such "
                             "as '4 KiB'" % (what, text)) from None

    def _range(self):
        """(address argument, length) from the controls; ValueError with a message."""
        if self.w_illegal.value:
            addr = self._parse_addr(self.w_addr_text.value or "0")
            length = self._parse_int(self.w_len_text.value or "0", "length")
            return addr, length
        v = self._selected_vma()
        if v is None:
            raise ValueError("no VMA selected: the process has none (mmap one) — or tick "
                             "'allow illegal values' to type any address")
        return self._addr_arg(v.start + self.w_addr.value), self.w_len.value

    def build_op(self, key: str):
        """The operation button ``key`` stands for, from the current controls (raises
        ValueError naming what is missing or malformed): each field of the operation's
        record is filled by the control its kind names."""
        if key not in _BUTTONS:
            raise ValueError("unknown operation %r; operations: %s"
                             % (key, ", ".join(k for k, _, _ in OPERATION_BUTTONS)))
        cls, preset, _row = _BUTTONS[key]
        labels = self.session.labels()
        args, rng = dict(preset), None
        for f in O.fields_of(cls):
            form = f.metadata.get("form")
            if f.name in args or form is None:
                continue
            if form == "proc":
                if not self.w_proc.value:
                    raise ValueError("no process: spawn one")
                args[f.name] = self.w_proc.value
            elif form in ("file", "file_size"):
                fl = self.world.files.get(self.w_file.value)
                if fl is None:
                    raise ValueError("no file to %s" % cls.spec.word)
                args[f.name] = self.w_file.value if form == "file" else fl.size
            elif form.startswith("new:"):
                kind = f.metadata["kind"].defines
                args[f.name] = self._new_label(form[4:], labels.kind_set(kind))
            elif form in ("addr", "length"):
                rng = rng or self._range()
                args[f.name] = rng[0] if form == "addr" else rng[1]
        return cls(**args)

    def do(self, key: str):
        """What the button ``key`` does: build its operation and apply it."""
        try:
            op = self.build_op(key)
        except ValueError as e:
            self._reject(str(e))
            return None
        return self.apply(op)

    def apply(self, op):
        """Apply one operation through the session; input the session refuses (not a step)
        goes to the log and changes nothing.  Returns the outcome (None if refused)."""
        try:
            return self.session.apply(op)
        except InvalidOperation as e:
            self._reject(str(e))
            return None

    def _reject(self, message: str):
        self._notes.append((self.session, self.session.position, message))
        with self._held([self.log, self.w_status]):
            self.log.value = self._log_value()
            self.w_status.value = self._status_value(extra=message)

    def _nav(self, what: str):
        s = self.session
        if what == "undo":
            if s.position > self.undo_floor:  # never into the explorer's own set-up
                s.undo()
            else:
                self._reject("nothing to undo: this is the explorer's starting state (a "
                             "process p mapping one hugepage of file f at a)")
        elif what == "redo":
            s.redo()
        elif self.base == 0:
            s.reset()
        else:
            s.goto(min(self.base, len(s.history)))

    # ---- configuration: a new session with the same trace ---------------------------------
    def _on_config(self, change):
        if self._syncing:
            return
        s = self.session
        if self.compare:
            schemes = tuple(self.w_scheme.value)
            if not schemes:
                self._reject("pick at least one scheme")
                self._syncing = True
                self.w_scheme.value = tuple(s.schemes)
                self._syncing = False
                return
        else:
            v = self.w_scheme.value
            if v in s.schemes and change["owner"] is self.w_scheme:
                self.view_scheme = v            # the session has it: just show it
                self._prev_counters = None
                self.redraw()
                return
            schemes = (v,) if v not in s.schemes else tuple(s.schemes)
        guard = None if self.w_guard.value == "none" else self.w_guard.value
        self.rebuild(schemes=schemes, guard=guard, errors=self.w_errors.value)

    def rebuild(self, schemes=None, **config):
        """A new session with ``schemes`` and machine settings ``config`` changed, the trace
        re-applied step by step (a step the new rules make impossible — a label its failed
        step never defined — is left out and noted in the log)."""
        old = self.session
        cfg = dict(old.config)
        cfg.update(config)
        schemes = tuple(schemes or old.schemes)
        new = Session(schemes=list(schemes), title=old.title, description=old.description,
                      watch=old.watch, snapshot_budget=old.snapshot_budget, **cfg)
        skipped = []
        at = [0]                      # at[i]: the new position after the first i old steps
        for i, st in enumerate(old.steps):
            try:
                new.apply(st.op, narration=st.narration)
            except InvalidOperation as e:
                skipped.append("step %d (%s) left out under the new settings: %s"
                               % (i + 1, views.op_label(st.op), e))
            at.append(new.position)
        self.undo_floor = at[min(self.undo_floor, len(at) - 1)]
        self.attach(new, base=at[min(self.base, len(at) - 1)])
        for msg in skipped:
            self._notes.append((new, new.position, msg))
        if skipped:
            self.log.value = self._log_value()
        return new

    def _sync_buttons(self):
        has_vma = self._selected_vma() is not None or self.w_illegal.value
        p = self.world.procs.get(self.w_proc.value)
        alive = p is not None and p.alive
        for key, b in self.buttons.items():
            needs = _needs(key)
            if needs == "vma":
                b.disabled = not (alive and has_vma)
            elif needs == "proc":
                b.disabled = not alive
            elif needs == "file":
                b.disabled = not self.w_file.value
        s = self.session
        self.b_undo.disabled = not s.can_undo or s.position <= self.undo_floor
        self.b_redo.disabled = not s.can_redo
        self.b_reset.disabled = s.position == self.base and not (self.base == 0 and s.history)
        drill_ok = alive and bool(self.w_file.value) and self._is_toy()
        self.b_drill_step.disabled = not drill_ok
        self.b_drill_run.disabled = not drill_ok

    # =====================================================================================
    # Drawing
    # =====================================================================================
    def _diagram_value(self) -> str:
        s = self.session
        last = s.last
        # the state at a position is fixed by the session and the step that led there (a
        # new step after an undo is a new object); the entry keeps both alive, so their ids
        # cannot be reused while it exists
        key = (id(s), s.position, id(last), self.view_scheme if not self.compare else
               s.schemes, self.theme, self.w_fit.value)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is s and hit[1] is last:
            self._cache.move_to_end(key)
            self._legend = hit[4]
            return hit[2].replace('data-version="%d"' % hit[3], 'data-version="%d"' % s.version,
                                  1)
        if self.compare:
            d = draw_compare([s.machines[k] for k in s.schemes],
                             before=[s.before(k) for k in s.schemes], theme=self.theme,
                             legend=False)
            label = "page tables under %s, side by side" % ", ".join(s.schemes)
        else:
            d = draw(self.machine, before=s.before(self.view_scheme), theme=self.theme,
                     legend=False)
            label = "page tables and folios under %s" % self.view_scheme
        try:
            value = views.svg_html(d.svg(), s.version, label, fit=self.w_fit.value)
        except DotNotFound:
            value = views.text_html(d.text(), s.version, label)
        self._legend = d.scene.legend          # shown once, under the diagram
        self._cache[key] = (s, last, value, s.version, self._legend)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    def _log_value(self) -> str:
        notes = [(p, m) for (s, p, m) in self._notes if s is self.session]
        return views.log_html(self.session, notes)

    def _status_value(self, extra: str = "") -> str:
        s = self.session
        cfg = s.config
        last = s.last
        txt = "step %d of %d · %s · guard %s · errors %s · %s geometry" % (
            s.position, len(s.history), "/".join(s.schemes), cfg.get("guard") or "none",
            cfg.get("errors"), self.machine.geometry.name)
        if last is not None:
            tag, text = views.classify(last.outcome, last.kind)
            word = {"errno": last.outcome.status, "guard": "guard refusal (%s)"
                    % last.outcome.status, "wrap": "ok, refcount WRAPPED"}.get(tag, tag)
            txt += " — last: <b>%s</b> %s → %s" % (views.RESULT_TAGS[tag],
                                                     views._h(views.op_label(last.op)),
                                                     word)
        if extra:
            txt += '<br><span class="r-rejected">✗ %s</span>' % views._h(extra)
        return txt

    def _title_value(self) -> str:
        s = self.session
        t = s.title or ("Compare schemes" if self.compare else "Explore hugetlb page tables")
        d = ("<br><small>%s</small>" % views._h(s.description.replace("\n", " "))) \
            if s.description else ""
        return "<b>%s</b>%s" % (views._h(t), d)

    def redraw(self):
        """Draw the session's current state: diagram, counters, log and controls, sent to
        the browser together."""
        t = time.perf_counter()
        try:
            diagram = self._diagram_value()
        except Exception as e:          # a view must never break the session
            diagram = '<div class="hgmviz-diagram" data-version="%d"><pre>cannot draw: %s' \
                      '</pre></div>' % (self.session.version, views._h(str(e)))
        watch = views.watched(self.session)
        counters, values = views.counters_html(self.session, watch, self._prev_counters)
        self._prev_counters = values
        log = self._log_value()
        with self._held():
            self.w_title.value = self._title_value()
            self.diagram.value = diagram
            self.w_legend.value = views.legend_html(self._legend)
            self.counters.value = counters
            self.log.value = log
            self._sync_controls()
            self.w_status.value = self._status_value()
            self.w_drill_info.value = self._drill_value()
        self.timings.append(time.perf_counter() - t)

# =========================================================================================
# Entry points
# =========================================================================================
def _default_session(geometry, scheme, schemes, guard, errors, kernel, nr_hugepages):
    """A session with one process ``p`` mapping one hugepage of file ``f`` (``a``), the page
    in the page cache: the set-up steps are recorded (undo goes before them)."""
    pool = nr_hugepages if nr_hugepages is not None else _DEFAULT_POOL.get(geometry, {})
    kw = dict(geometry=geometry, guard=guard, errors=errors, kernel=kernel, nr_hugepages=pool)
    if schemes is not None:
        s = Session(schemes=list(schemes), watch=[("f", 0)], **kw)
    else:
        s = Session(scheme=scheme, watch=[("f", 0)], **kw)
    hs = max(size for size, n in pool.items() if n) if pool else None
    if geometry != "toy" and pool.get(2 << 20):
        hs = 2 << 20              # at x86-64 a 2 MiB page keeps the pictures small
    if hs is None:
        return s
    for op, text in ((O.Spawn("p"), "A process with an empty address space."),
                     (O.MemfdCreate("f", hs, hs), "A hugetlbfs file of one %s hugepage."
                      % views.fmt_size(hs)),
                     (O.Fallocate("f", 0, hs), "fallocate: the folio is in the page cache "
                      "(1 reference)."),
                     (O.Mmap("p", "f", hs, "a"), "mmap(MAP_SHARED): one VMA, nothing mapped "
                      "yet.")):
        s.apply(op, narration=text)
    return s


def _session_of(session, scenario, geometry, scheme, schemes, guard, errors, kernel,
                nr_hugepages) -> tuple:
    """``(session, undo floor)``: the session given, the scenario's, or the default set-up
    (whose steps undo does not go into)."""
    if session is not None:
        if not isinstance(session, Session):
            raise TypeError(
                "explore() / compare() take a hgmviz.Session (or scenario='name'), not %s: "
                "for a Machine you built by hand, draw it with hv.draw(m); to explore "
                "operations, start from hv.explore() or hv.Session(...) and apply them there"
                % type(session).__name__)
        return session, 0
    if scenario is not None:
        return load_scenario(scenario), 0
    s = _default_session(geometry, scheme, schemes, guard, errors, kernel, nr_hugepages)
    return s, s.position


def explore(session=None, scenario=None, *, geometry="toy", scheme="per_piece", guard=None,
            errors="proposed", kernel="6.2", nr_hugepages=None, theme="light",
            redraw_cache=32) -> Explorer:
    """The interactive explorer of one scheme.

    ``session``: a :class:`~hgmviz.session.Session` to explore (its first scheme is drawn);
    ``scenario``: the name of a shipped scenario (``hgmviz.scenarios.list_scenarios()``) or
    a path to a scenario file; otherwise a new session of ``geometry`` ("toy", "x86_64"),
    ``scheme``, ``guard`` (None, "int_max_half", "sign", "sign_posted"), ``errors`` ("proposed", "v2"),
    ``kernel`` and ``nr_hugepages`` (default: two 256 KiB pages in the toy geometry, four
    2 MiB and one 1 GiB at x86-64), set up with one process ``p`` mapping one hugepage of a
    file ``f`` at ``a``.  Reset returns to the state the explorer opened at.
    ``redraw_cache``: drawings kept for undo / redo (0: draw every time)."""
    session, floor = _session_of(session, scenario, geometry, scheme, None, guard, errors,
                                 kernel, nr_hugepages)
    return Explorer(session, theme=theme, redraw_cache=redraw_cache, undo_floor=floor)


def compare(session=None, scenario=None, *, schemes=("per_piece", "thp_like",
                                                     "hstate_present"),
            geometry="toy", guard=None, errors="proposed", kernel="6.2", nr_hugepages=None,
            theme="light", redraw_cache=32) -> Explorer:
    """One trace, several schemes side by side: every click runs on one machine per scheme
    and the diagrams, counters and results are redrawn together.  Arguments as
    :func:`explore`; ``schemes`` for a new session (a session or scenario brings its own)."""
    session, floor = _session_of(session, scenario, geometry, None, schemes, guard, errors,
                                 kernel, nr_hugepages)
    return Explorer(session, compare=True, theme=theme, redraw_cache=redraw_cache,
                    undo_floor=floor)
