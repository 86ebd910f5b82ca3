"""Layer 6: the explorer's overflow drill (toy geometry, through the session) and scale
run (x86-64, a machine of its own) — a mixin of :class:`~hgmviz.widgets.explorer.Explorer`."""
from __future__ import annotations

import asyncio

from ..schemes import SCHEMES
from . import views
from .drill import ScaleRun, drill_step_ops

__all__ = ["DrillMixin"]


class DrillMixin:
    # =====================================================================================
    # The overflow drill
    # =====================================================================================
    def _is_toy(self) -> bool:
        return self.machine.geometry.counter_bits < 32

    def _drill_value(self) -> str:
        if not self._is_toy():
            return "<small>the step-by-step drill needs the toy geometry (explore(geometry="\
                   "'toy')); use the scale run below</small>"
        f = self.world.files.get(self.w_file.value)
        folio = f.folio_at(0) if f is not None and f.size else None
        if folio is None:
            return "<small>the file has no folio yet (fallocate or touch it)</small>"
        g = self.machine.geometry
        note = getattr(self, "_drill_note", "")
        return ("<small>folio %d: refcount <b>%d</b>%s · INT_MAX %d, INT_MAX/2 %d%s</small>"
                % (folio.id, folio.refcount, " <b>WRAPPED</b>" if folio.wrapped else "",
                   g.INT_MAX, g.INT_MAX // 2,
                   "<br>%s" % views._h(note) if note else ""))

    def _out_of_room(self, mappings: int, per_mapping: int) -> str:
        """Why the drill stopped on mmap's ENOMEM before any guard: this scheme's count
        grows too slowly for the toy address space."""
        g = self.machine.geometry
        need = -(-g.INT_MAX // max(per_mapping, 1))
        return ("The address space is full after %d mappings: under %s one mapping adds "
                "%d reference(s) to the folio however finely it is mapped, so reaching "
                "INT_MAX (%d) would take about %d mappings and this scheme cannot reach the "
                "guard or the wrap here.  Under per_piece a mapping at 4 KiB adds one per "
                "piece (%d)." % (mappings, self.view_scheme, per_mapping, g.INT_MAX, need,
                                 self.world.files[self.w_file.value].hstate.size //
                                 g.PAGE_SIZE))

    def drill_step(self, whole: bool = False):
        """Apply the drill's next step (see :func:`hgmviz.widgets.drill.drill_step_ops`)."""
        proc, file = self.w_proc.value, self.w_file.value
        if not proc or not file:
            self._reject("the drill needs a process and a file")
            return None
        try:
            ops = drill_step_ops(self.world, proc, file, self.machine.geometry.PAGE_SIZE,
                                 whole=whole)
        except KeyError as e:
            self._reject("drill: %s" % e)
            return None
        out = None
        self._quiet = True
        try:
            for op in ops:
                out = self.apply(op)
                if out is None or not out.ok:
                    break
        finally:
            self._quiet = False
        self.redraw()
        return out

    def drill_run(self, max_steps: int = 2000):
        """Drill steps (a whole mapping each) until one fails (the guard's refusal, or any
        error), the folio's refcount wraps, or ``max_steps``; one redraw at the end."""
        f = self.world.files.get(self.w_file.value)
        folio = f.folio_at(0) if f is not None else None
        wrapped0 = folio.wrapped if folio is not None else False
        out = None
        self._drill_note = ""
        self._quiet = True
        done = 0                       # mappings made by this run
        start = folio.refcount if folio is not None else 0
        try:
            for _ in range(max_steps):
                proc, file = self.w_proc.value, self.w_file.value
                ops = drill_step_ops(self.world, proc, file, self.machine.geometry.PAGE_SIZE,
                                     whole=True)
                for op in ops:
                    out = self.apply(op)
                    if out is None or not out.ok:
                        folio = self.world.files[file].folio_at(0)
                        if out is not None and out.status == "ENOMEM" and \
                                type(op).__name__ == "Mmap" and done and folio is not None:
                            per = round((folio.refcount - start) / done)
                            self._drill_note = self._out_of_room(done, per)
                        return out
                    done += type(op).__name__ == "Mmap"
                folio = self.world.files[file].folio_at(0)
                if folio is not None and folio.wrapped and not wrapped0:
                    return out
        finally:
            self._quiet = False
            self.redraw()
        return out

    # ---- the scale run (real geometry) ----------------------------------------------------
    def _scale_obj(self) -> ScaleRun:
        cfg = self.session.config
        scheme = self.view_scheme if SCHEMES[self.view_scheme].supports_hgm else "per_piece"
        want = (scheme, cfg.get("guard"), str(cfg.get("kernel", "6.2")))
        sc = self._scale
        if sc is None or (sc.scheme, sc.guard, str(sc.kernel)) != want:
            kernel = cfg.get("kernel", "6.2")
            kernel = kernel if isinstance(kernel, str) else getattr(kernel, "label", "6.2")
            self._scale = sc = ScaleRun(scheme=scheme, guard=cfg.get("guard"), kernel=kernel)
        return sc

    def _scale_show(self, sc: ScaleRun):
        with self._held([self.w_scale_progress, self.w_scale_info, self.b_scale_run,
                         self.b_scale_stop]):
            self.w_scale_progress.max = sc.expected_vmas
            self.w_scale_progress.value = min(sc.vmas, sc.expected_vmas)
            self.w_scale_info.value = "<small>%s under %s, guard %s</small>" % (
                views._h(sc.summary()), sc.scheme, sc.guard or "none")
            running = self._scale_task is not None and not self._scale_task.done()
            self.b_scale_run.disabled = running or sc.done
            self.b_scale_stop.disabled = not running

    def scale_start(self, blocking=None):
        """Start (or continue) the scale run.  In a running kernel it goes chunk by chunk as
        an asyncio task, so the Stop button is heard between chunks; without an event loop
        (plain Python, tests) or with ``blocking=True`` it runs to the end here."""
        sc = self._scale_obj()
        if sc.done:
            sc.release()
            sc.reset_counts()
        sc.stop_requested = False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if blocking or loop is None:
            sc.run(progress=self._scale_show)
            self._scale_show(sc)
            return sc
        self._scale_task = loop.create_task(self._scale_loop(sc))
        self._scale_show(sc)
        return sc

    async def _scale_loop(self, sc: ScaleRun):
        try:
            while not sc.done and not sc.stop_requested:
                sc.run_chunk()
                self._scale_show(sc)
                await asyncio.sleep(0.01)      # let the kernel hear the Stop button
        finally:
            self._scale_task = None
            self._scale_show(sc)

    def scale_stop(self):
        if self._scale is not None:
            self._scale.stop_requested = True

    def scale_release(self):
        if self._scale is not None:
            self._scale.release()
            self._scale_show(self._scale)


