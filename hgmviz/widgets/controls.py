"""Layer 6: keeping the explorer's controls legal — the process, VMA, file, granularity,
address and length controls follow the session's state, and the buttons are enabled only
where their operation has what it needs.  A mixin of :class:`~hgmviz.widgets.explorer.Explorer`
(no state of its own)."""
from __future__ import annotations

from . import views

__all__ = ["ControlsMixin", "legal_granularities"]

def legal_granularities(geometry, vma, hstate) -> list:
    """The entry sizes that may map ``vma`` (a :class:`~hgmviz.mm.Vma` of a hugetlb file of
    ``hstate``): the hstate size alone, or with HGM (``vma.hgm``) every page-table level size
    from ``PAGE_SIZE`` up to it (``hugetlb_pte_size`` of the leaves HGM installs)."""
    if not vma.hgm:
        return [hstate.size]
    sizes = [geometry.level_size(lv) for lv in range(1, geometry.levels)]
    return [s for s in sizes if geometry.PAGE_SIZE <= s <= hstate.size]


class ControlsMixin:
    # =====================================================================================
    # Keeping the controls legal
    # =====================================================================================
    def _on_target(self, change):
        if not self._syncing:
            with self._held([self.w_proc, self.w_vma, self.w_gran, self.w_addr, self.w_len,
                             self.w_where, self.w_file] + list(self.buttons.values())):
                self._sync_controls()

    def _on_slider(self, change):
        if not self._syncing:
            with self._held([self.w_len, self.w_where]):
                self._sync_lengths()

    def _on_illegal(self, change):
        free = bool(change["new"])
        v = self._selected_vma()
        with self._held([self.w_addr, self.w_len, self.w_addr_text, self.w_len_text,
                         self.w_where] + list(self.buttons.values())):
            if free and v is not None:
                self.w_addr_text.value = "%#x" % (v.start + self.w_addr.value)
                self.w_len_text.value = "%#x" % self.w_len.value
            for w in (self.w_addr, self.w_len, self.w_gran):
                w.layout.display = "none" if free else None
            for w in (self.w_addr_text, self.w_len_text):
                w.layout.display = None if free else "none"
            self._sync_buttons()

    def _sync_controls(self):
        """Options and ranges of the target controls from the state (keeping the user's
        choices where they still make sense)."""
        self._syncing = True
        try:
            w = self.world
            procs = sorted(w.procs.items(), key=lambda kv: kv[1].pid)
            opts = [("%s (pid %d%s)" % (lab, p.pid, "" if p.alive else ", exited"), lab)
                    for lab, p in procs]
            keep = self.w_proc.value
            alive = [lab for lab, p in procs if p.alive]
            self.w_proc.options = opts
            self.w_proc.value = keep if keep in dict((v, 1) for _, v in opts) else \
                (alive[0] if alive else (opts[0][1] if opts else None))
            # files
            fopts = [("%s%s" % (lab, " (closed)" if f.closed else ""), lab)
                     for lab, f in sorted(w.files.items())]
            fkeep = self.w_file.value
            self.w_file.options = fopts
            labels = [v for _, v in fopts]
            self.w_file.value = fkeep if fkeep in labels else (labels[0] if labels else None)
            # VMAs
            vmas = self._vmas()
            vopts = []
            for v in vmas:
                flab, f = self._label_of_file(v.file)
                hs = f.hstate.size if f is not None else 0
                tags = [views.fmt_size(v.end - v.start), "%s @%#x" % (flab, v.pgoff << 12),
                        "%s pages" % views.fmt_size(hs)]
                if v.hgm:
                    tags.append("HGM")
                if v.uffd:
                    tags.append("uffd " + "|".join(v.uffd_modes))
                vopts.append(("%#x–%#x · %s" % (v.start, v.end, " · ".join(tags)), v.start))
            vkeep = self.w_vma.value
            self.w_vma.options = vopts
            starts = [s for _, s in vopts]
            if vkeep in starts:
                self.w_vma.value = vkeep
            else:       # the VMA that now holds the old address, else the first
                old = vkeep if isinstance(vkeep, int) else None
                inside = [v.start for v in vmas if old is not None and v.start <= old < v.end]
                self.w_vma.value = inside[0] if inside else (starts[0] if starts else None)
            # granularity
            v = self._selected_vma()
            if v is not None:
                _, f = self._label_of_file(v.file)
                grans = legal_granularities(self.machine.geometry, v, f.hstate)
            else:
                grans = []
            gkeep = self.w_gran.value
            self.w_gran.options = [(views.fmt_size(g), g) for g in grans]
            if grans:
                self.w_gran.value = gkeep if gkeep in grans else grans[-1]
            # address and length
            if v is not None and grans:
                g = self.w_gran.value
                size = v.end - v.start
                a = min((self.w_addr.value // g) * g, size - g)
                self.w_addr.max = max(size - g, 0)
                self.w_addr.value = max(a, 0)
                self.w_addr.step = g
                self.w_addr.disabled = False
            else:
                self.w_addr.disabled = True
            self._sync_lengths()
            self._sync_buttons()
        finally:
            self._syncing = False

    def _sync_lengths(self):
        v = self._selected_vma()
        g = self.w_gran.value
        if v is None or not g:
            self.w_len.disabled = True
            self.w_where.value = "<small>no VMA: mmap one, or allow illegal values</small>"
            return
        room = v.end - v.start - self.w_addr.value
        if g != self._len_gran:        # a new granularity: one piece of it
            self._len_gran = g
            ln = g
        else:
            ln = max(g, min((self.w_len.value // g) * g, room))
        prev = self._syncing
        self._syncing = True
        try:
            # in this order no assignment is refused or clamps the value on the way
            self.w_len.min = 0
            self.w_len.max = room
            self.w_len.value = ln
            self.w_len.min = g
            self.w_len.step = g
            self.w_len.disabled = False
        finally:
            self._syncing = prev
        a = v.start + self.w_addr.value
        self.w_where.value = ("<small>address <code>%#x</code> = <code>%s</code>, length %s"
                              "</small>" % (a, views.fmt_addr(self._addr_arg(a)),
                                            views.fmt_size(self.w_len.value)))

