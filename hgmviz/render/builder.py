"""Layer 5: the scene builder — reads one machine's page tables and folios (through a
:class:`~.view.StateView`, never writing) into scene nodes, rows and edges, by the
collapsing rule described in :mod:`.scene`."""
from __future__ import annotations

import numpy as np

from ..core.rowsummary import scan_leaves, table_pair_steps
from .model import (_MARK, _P_ALL, _P_GROUP, _P_LEAF_CONTIG, _P_LEAF_NEXT_FOLIO, _P_NONE,
                    LEAF, NEW, NONE, REMOVED, REPLACED, TABLE, Edge,
                    Line, Node, Row, Strip, _kind, _lin, _OverBudget, _ranges, downsample,
                    fmt_size)
from .view import StateView

# =========================================================================================
# The builder
# =========================================================================================
class _Builder:
    def __init__(self, m, now: StateView, bef, prefix: str, column: int, fold: int,
                 max_rows: int, budget, memo=None):
        g = m.geometry
        self.m = m
        self.g = g
        self.now = now
        self.bef = bef
        self.prefix = prefix
        self.column = column
        self.fold = fold
        self.max_rows = max(2, max_rows)
        self.budget = budget
        self.ptrs = g.PTRS_PER_TABLE
        self.ps = g.page_shift
        self.nodes = []
        self.edges = []
        self.table_node = {}
        self.folios_seen = set()
        self.start = 0
        self.end = 0
        self.cluster = ""
        self.mcluster = prefix + "m"
        self.files_shown = set()
        self._folio_lines_seen = {}
        self.memo = {} if memo is None else memo   # shared by the builders of one drawing

    # -- bookkeeping ----------------------------------------------------------------------
    def _reserve(self):
        self.nodes.append(None)
        if self.budget is not None and len(self.nodes) > self.budget:
            raise _OverBudget()
        return len(self.nodes) - 1

    def lname(self, level) -> str:
        return self.g.level_name(level)

    def idx_text(self, level, lo, hi) -> str:
        return "%s[%d]" % (self.lname(level), lo) if lo == hi else \
            "%s[%d..%d]" % (self.lname(level), lo, hi)

    # -- entries ---------------------------------------------------------------------------
    def entry_states(self, now_vals, bef_vals):
        """Per entry: effective kind, status, folio, page, child now, child before, kind
        before (for replaced entries)."""
        kn = _kind(now_vals)
        if bef_vals is None:
            st = np.zeros(now_vals.shape, np.int8)
            eff = now_vals
            k = kn
            cb = np.zeros(now_vals.shape, np.int32)
            pk = np.full(now_vals.shape, -1, np.int8)
        else:
            kb = _kind(bef_vals)
            st = np.zeros(now_vals.shape, np.int8)
            st[(kn != NONE) & (kb == NONE)] = NEW
            st[(kn == NONE) & (kb != NONE)] = REMOVED
            both = (kn != NONE) & (kb != NONE)
            st[both & ((kn != kb) | ((kn == LEAF) & (now_vals != bef_vals)))] = REPLACED
            rem = st == REMOVED
            eff = np.where(rem, bef_vals, now_vals)
            k = np.where(rem, kb, kn)
            cb = np.where(kb == TABLE, bef_vals >> 1, 0)
            pk = np.where(st == REPLACED, kb, -1).astype(np.int8)
        lm = k == LEAF
        if lm.all():
            f, p = self.now.leaf_folio_page(eff >> 1)
        else:
            f = np.full(eff.shape, -1, np.int64)
            p = np.full(eff.shape, -1, np.int64)
            if lm.any():
                f[lm], p[lm] = self.now.leaf_folio_page(eff[lm] >> 1)
        cn = np.where(kn == TABLE, now_vals >> 1, 0)
        return {"k": k, "st": st, "f": f, "p": p, "cn": cn, "cb": cb, "pk": pk}

    def clip(self, base, level):
        S = 1 << self.g.level_shift(level)
        lo = 0 if self.start <= base else (self.start - base) // S
        top = base + self.ptrs * S
        hi = self.ptrs - 1 if self.end >= top else (self.end - 1 - base) // S
        return int(lo), int(hi), S

    def bent(self, tb, lo, hi):
        if self.bef is None:
            return None
        if not tb:
            return np.zeros(hi - lo + 1, np.int64)
        return self.bef.ent[tb, lo:hi + 1]

    # -- pair types and runs -----------------------------------------------------------------
    def pair_types(self, E, level, base, i0, drawn):
        k, st, f, p, pk = E["k"], E["st"], E["f"], E["p"], E["pk"]
        n = k.size
        pt = np.zeros(n, np.int64)
        if n < 2:
            return pt
        same = (k[1:] == k[:-1]) & (st[1:] == st[:-1]) & (pk[1:] == pk[:-1])
        t = np.zeros(n - 1, np.int64)
        t[same & (k[1:] == NONE)] = _P_NONE
        leaf = same & (k[1:] == LEAF)
        ppe = 1 << (self.g.level_shift(level) - self.ps)
        df = f[1:] - f[:-1]
        dp = p[1:] - p[:-1]
        t[leaf & (df == 0) & (dp == ppe)] = _P_LEAF_CONTIG
        t[leaf & (df == 1) & (dp == 0)] = _P_LEAF_NEXT_FOLIO
        tab = same & (k[1:] == TABLE)
        if tab.any():
            removed = st[1:] == REMOVED
            t[tab & removed] = _P_ALL
            if not drawn:
                t[tab & ~removed] = _P_ALL
            else:
                cand = tab & ~removed
                if cand.any():
                    t[cand] = self.group_types(E, np.flatnonzero(cand) + 1, level, base, i0)
        pt[1:] = t
        return pt

    def group_types(self, E, right, level, base, i0):
        """Pair types for pointer pairs (right-1, right): _P_GROUP + step code, or 0
        (:func:`~hgmviz.core.rowsummary.table_pair_steps` decides the translates)."""
        pos = np.union1d(right - 1, right)
        cn = E["cn"][pos]
        cb = E["cb"][pos]
        S = 1 << self.g.level_shift(level)
        va = base + (i0 + pos) * S
        ok = (va >= self.start) & (va + S <= self.end)
        now = self.now
        N = np.ascontiguousarray(now.ent[cn])
        ok &= now.tshare[cn] == 0
        if self.bef is not None:
            had = cb > 0
            if had.all():
                B = np.ascontiguousarray(self.bef.ent[cb])
            else:
                B = np.zeros_like(N)
                B[had] = self.bef.ent[cb[had]]
            ok &= (cb == 0) | (self.bef.tshare[cb] == 0)
        else:
            B = N
        # rows a = the pos index of right-1, b = of right
        ia, ib = np.searchsorted(pos, right - 1), np.searchsorted(pos, right)
        has_bef = self.bef is not None
        # The processes of one machine (forked) and the columns of a comparison (one run
        # under several schemes) often hold page-table pages with equal entries: within one
        # drawing, an answer is reused when every input is equal (compared in full).
        key = (has_bef, S >> self.ps, N.shape, ia.tobytes(), ib.tobytes(), ok.tobytes(),
               self.now.fl.tobytes(), N[:, 0].tobytes(), N[:, -1].tobytes())
        for N0, B0, steps in self.memo.get(key, ()):
            if np.array_equal(N0, N) and (not has_bef or np.array_equal(B0, B)):
                break
        else:
            steps = table_pair_steps(N, B, has_bef, ok, self.now.fl, S >> self.ps, ia, ib)
            self.memo.setdefault(key, []).append((N, B, steps))
        return np.where(steps >= 0, _P_GROUP + steps, 0)

    def runs(self, pt):
        """Greedy maximal runs (first, last) of one pair type; at most max_rows + 1 runs, the
        last of which then stands for everything after max_rows - 1 runs."""
        n = pt.size
        chg = np.flatnonzero(pt[1:] != pt[:-1]) + 1
        out = []
        s = 0
        while s < n:
            if len(out) == self.max_rows - 1 and s < n:
                # would the rest need more than one row?
                rest = self._count_runs(pt, chg, s, 2)
                if rest > 1:
                    out.append((s, n - 1, True))
                    return out
            if s + 1 >= n or pt[s + 1] == 0:
                out.append((s, s, False))
                s += 1
                continue
            j = np.searchsorted(chg, s + 2)
            e = int(chg[j]) if j < chg.size else n
            out.append((s, e - 1, False))
            s = e
        return out

    @staticmethod
    def _count_runs(pt, chg, s, limit):
        n = pt.size
        c = 0
        while s < n and c < limit:
            c += 1
            if s + 1 >= n or pt[s + 1] == 0:
                s += 1
                continue
            j = np.searchsorted(chg, s + 2)
            s = int(chg[j]) if j < chg.size else n
        return c

    # -- subtrees (summaries) -------------------------------------------------------------
    def subtree(self, view, tables, level, bases, want_va=True):
        """Every present leaf under whole ``tables`` (at ``level``, at VA ``bases``):
        arrays (va, shift, pfn) and {level: number of tables}; ``va`` is empty unless
        ``want_va``."""
        tables = np.asarray(tables, np.int64)
        bases = np.asarray(bases, np.int64)
        keep = tables > 0
        tables, bases = tables[keep], bases[keep]
        va_l, sh_l, pfn_l = [], [], []
        ntab = {}
        while tables.size and level >= 1:
            ntab[level] = int(tables.size)
            S = 1 << self.g.level_shift(level)
            V = view.ent[tables]
            lm = (V & 1) == 1
            tm = (V != 0) & ~lm
            pfn_l.append(V[lm] >> 1)
            sh_l.append(np.full(pfn_l[-1].size, self.g.level_shift(level), np.int64))
            if want_va:
                va = bases[:, None] + np.arange(self.ptrs, dtype=np.int64)[None, :] * S
                va_l.append(va[lm])
                bases = va[tm]
            tables = (V[tm] >> 1).astype(np.int64)
            level -= 1
        cat = (lambda xs: np.concatenate(xs).astype(np.int64, copy=False) if xs
               else np.zeros(0, np.int64))
        return cat(va_l), cat(sh_l), cat(pfn_l), ntab

    def leaves_of_entries(self, view, t, level, base, lo, hi, want_va=True):
        """Leaves directly in entries lo..hi of table t plus everything under its pointers."""
        if not t:
            z = np.zeros(0, np.int64)
            return z, z, z, {}
        S = 1 << self.g.level_shift(level)
        V = view.ent[t, lo:hi + 1].astype(np.int64)
        K = _kind(V)
        va = base + np.arange(lo, hi + 1, dtype=np.int64) * S
        lm = K == LEAF
        tm = K == TABLE
        sva, ssh, spfn, ntab = self.subtree(view, V[tm] >> 1, level - 1, va[tm], want_va)
        return (np.concatenate([va[lm], sva]) if want_va else sva,
                np.concatenate([np.full(int(lm.sum()), self.g.level_shift(level), np.int64), ssh]),
                np.concatenate([V[lm] >> 1, spfn]), ntab)

    def summary_text(self, va, sh, pfn, ntab=None):
        """``"2 PMD tables, 512 PTE tables: 262,144 leaves (…) → folio 0"`` and the folios;
        ``ntab`` ({level: tables}) is left out when None."""
        folios = np.zeros(0, np.int64)
        if pfn.size:
            f = self.now.leaf_folio(pfn)
            f = f[f >= 0]
            seen = np.zeros(self.now.nr_folios, bool)    # folio ids are small and dense
            seen[f] = True
            folios = np.flatnonzero(seen)
        per_shift = np.bincount(sh.astype(np.int64, copy=False)) if pfn.size else sh
        return self._summary(int(pfn.size), {int(s): int(per_shift[s])
                                             for s in np.flatnonzero(per_shift)}, folios, ntab)

    def _summary(self, n, per_shift, folios, ntab):
        """:meth:`summary_text` from ``n`` leaves, ``{shift: leaves}`` and the folio ids."""
        parts = []
        if ntab is not None:
            parts.append(", ".join("%d %s table%s" % (n, self.lname(lv), "" if n == 1 else "s")
                                   for lv, n in sorted(ntab.items(), reverse=True)) or "no tables")
        if n:
            by = ", ".join("%s × %s" % (format(per_shift[s], ","), fmt_size(1 << s))
                           for s in sorted(per_shift, reverse=True) if per_shift[s])
            parts.append("%s lea%s (%s) → folio%s %s" % (
                format(n, ","), "f" if n == 1 else "ves", by,
                "" if folios.size == 1 else "s", _ranges(folios)))
        else:
            parts.append("no leaves")
        return ": ".join(parts) if ntab is not None else parts[-1], tuple(int(x) for x in folios)

    def subtree_summary(self, view, tables, level):
        """``summary_text(*subtree(view, tables, level, bases))`` — with the table counts —
        counted by :func:`~hgmviz.core.rowsummary.scan_leaves`, without per-leaf arrays."""
        tables = np.asarray(tables, np.int64)
        return self._scan(view, tables[tables > 0], level, 0, {}, {})

    def entries_summary(self, view, t, level, lo, hi):
        """``summary_text(*leaves_of_entries(view, t, level, …)[:3])`` (no table counts),
        counted as :meth:`subtree_summary` counts."""
        if not t:
            return self._summary(0, {}, np.zeros(0, np.int64), None)
        seen = np.zeros(self.now.nr_folios, bool)
        n, kids = scan_leaves(view.ent[t, lo:hi + 1].reshape(1, -1), self.now.fl, seen)
        return self._scan(view, kids, level - 1, n, {self.g.level_shift(level): n}, None, seen)

    def _scan(self, view, tables, level, n, per_shift, ntab, seen=None):
        if seen is None:
            seen = np.zeros(self.now.nr_folios, bool)
        while tables.size and level >= 1:
            if ntab is not None:
                ntab[level] = int(tables.size)
            c, tables = scan_leaves(view.ent[tables], self.now.fl, seen)
            sh = self.g.level_shift(level)
            per_shift[sh] = per_shift.get(sh, 0) + c
            n += c
            level -= 1
        return self._summary(n, per_shift, np.flatnonzero(seen), ntab)

    def diff_text(self, now_l, bef_l):
        """'+a −b leaves' between two (va, shift, pfn) sets, and whether they differ."""
        va_n, sh_n, pf_n = now_l[:3]
        va_b, sh_b, pf_b = bef_l[:3]
        _, i_n, i_b = np.intersect1d(va_n, va_b, assume_unique=True, return_indices=True)
        same = int(((sh_n[i_n] == sh_b[i_b]) & (pf_n[i_n] == pf_b[i_b])).sum())
        added = va_n.size - same
        gone = va_b.size - same
        if not added and not gone:
            return "", False
        return " (+%s −%s leaves)" % (format(added, ","), format(gone, ",")), True

    # -- leaf text --------------------------------------------------------------------------
    def leaf_desc(self, level, f0, fstep, p0, pstep, cnt, kf=0, kp=0):
        shift = self.g.level_shift(level)
        ppe = 1 << (shift - self.ps)
        size = fmt_size(1 << shift)
        whole = ppe == self.now.folio_pages(int(f0))
        if fstep == 0:
            if whole and cnt == 1 and kp == 0:
                return "%s → folio %s (whole)" % (size, _lin(f0, kf))
            last = p0 + cnt * ppe - 1
            if last == p0:
                return "%s → folio %s, page %s" % (size, _lin(f0, kf), _lin(p0, kp))
            return "%s → folio %s, pages %s..%s" % (size, _lin(f0, kf), _lin(p0, kp), _lin(last, kp))
        tail = "each whole" if whole and kp == 0 else \
            "pages %s..%s of each" % (_lin(p0, kp), _lin(p0 + ppe - 1, kp))
        return "%s → folios %s..%s, %s" % (size, _lin(f0, kf), _lin(f0 + cnt - 1, kf), tail)

    # -- tables -------------------------------------------------------------------------------
    def table(self, t, tb, level, base, mark=""):
        if t in self.table_node:
            return self.table_node[t]
        nid = "%st%d" % (self.prefix, t)
        self.table_node[t] = nid
        slot = self._reserve()
        shared = int(self.now.tshare[t]) > 0
        lo, hi, S = self.clip(base, level)
        rows = self.rows(nid, t, tb, level, base)
        sub = [self.idx_text(level, lo, hi)]
        lines = []
        if shared:
            n = int(self.now.tshare[t]) + 1
            was = ""
            if self.bef is not None and tb and int(self.bef.tshare[tb]) != n - 1:
                was = ", was %d" % int(self.bef.tshare[tb])
            lines.append(Line("shared PMD page: %d mms map it (pt_share_count %d%s)"
                              % (n, n - 1, was), "changed" if was else ""))
        else:
            sub.append("%#x–%#x" % (base + lo * S, base + (hi + 1) * S))
        self.nodes[slot] = Node(
            id=nid, kind="table", title="%s table %d" % (self.lname(level), t),
            subtitle=" · ".join(sub), rows=tuple(rows), lines=tuple(lines), mark=mark,
            level=level, tables=(int(t),), shared=shared, column=self.column,
            cluster=self.mcluster if shared else self.cluster)
        return nid

    def rows(self, nid, t, tb, level, base, group=None):
        lo, hi, S = self.clip(base, level)
        if hi < lo:
            return []
        now_vals = self.now.ent[t, lo:hi + 1] if t else np.zeros(hi - lo + 1, np.int64)
        E = self.entry_states(now_vals, self.bent(tb, lo, hi))
        drawn = level > 1 and level - 1 > self.fold
        pt = self.pair_types(E, level, base, lo, drawn)
        out = []
        for a, b, rest in self.runs(pt):
            port = "r%d" % len(out)
            if rest:
                out.append(self.more_row(port, E, t, tb, level, base, lo, a, b, group))
            else:
                out.append(self.make_row(nid, port, E, pt, t, tb, level, base, lo, a, b, group))
        return out

    def make_row(self, nid, port, E, pt, t, tb, level, base, i0, a, b, group):
        lo, hi = i0 + a, i0 + b
        cnt = b - a + 1
        k, st = int(E["k"][a]), int(E["st"][a])
        mark = _MARK[st]
        label = self.idx_text(level, lo, hi)
        sh = self.g.level_shift(level)
        S = 1 << sh
        child = self.lname(level - 1) if level > 1 else ""
        if k == NONE:
            return Row(port, "none", level, lo, hi, "%s none" % label, shift=sh)
        if k == LEAF:
            f0, p0 = int(E["f"][a]), int(E["p"][a])
            typ = int(pt[a + 1]) if cnt > 1 else _P_LEAF_CONTIG
            ppe = S >> self.ps
            fstep, pstep = (1, 0) if typ == _P_LEAF_NEXT_FOLIO else (0, ppe)
            kf, kp = group[:2] if group else (0, 0)
            desc = self.leaf_desc(level, f0, fstep, p0, pstep, cnt, kf, kp)
            folios = tuple(range(f0, f0 + fstep * (cnt - 1) + 1))
            if group and kf:
                folios = tuple(sorted({x + kk * kf for x in folios for kk in range(group[2])}))
            if st == REMOVED:
                text = "%s none — was %s" % (label, desc)
            elif st == REPLACED:
                was, _ = self.entries_summary(self.bef, tb, level, lo, hi)
                text = "%s %s (replaced: was %s)" % (label, desc, was)
            else:
                text = "%s %s" % (label, desc)
            return Row(port, "leaf", level, lo, hi, text, mark, st != REMOVED, "",
                       self.g.level_shift(level), f0, fstep, p0, pstep,
                       group[0] if group else 0, group[1] if group else 0, folios)
        # pointers to tables
        cn = E["cn"][a:b + 1]
        cb = E["cb"][a:b + 1]
        bases = base + np.arange(lo, hi + 1, dtype=np.int64) * S
        drawn = level > 1 and level - 1 > self.fold
        if st == REMOVED:
            summ, folios = self.subtree_summary(self.bef, cb, level - 1)
            return Row(port, "none", level, lo, hi, "%s none — was → %s" % (label, summ),
                       "removed", False, shift=sh, folios=folios)
        if not drawn:
            if self.bef is None or mark != "":
                summ, folios = self.subtree_summary(self.now, cn, level - 1)
            else:
                now_l = self.subtree(self.now, cn, level - 1, bases)
                summ, folios = self.summary_text(*now_l)
            text = "%s → %s (not drawn)" % (label, summ)
            if self.bef is not None and mark == "":
                d, changed = self.diff_text(now_l, self.subtree(self.bef, cb, level - 1, bases))
                if changed:
                    mark = "changed"
                    text += d
            self.folios_seen.update(folios)
            return Row(port, "fold", level, lo, hi, text, mark, shift=sh, folios=folios)
        was = ""
        if st == REPLACED:
            w, _ = self.entries_summary(self.bef, tb, level, lo, hi)
            was = " (replaced: was %s)" % w
        if cnt == 1:
            c = int(cn[0])
            target = self.table(c, int(cb[0]), level - 1, int(bases[0]), mark)
            shared = int(self.now.tshare[c]) > 0
            text = "%s → %s table %d%s%s" % (label, child, c, " (shared)" if shared else "", was)
            self.edges.append(Edge(nid, port, target, "table", mark))
            return Row(port, "table", level, lo, hi, text, mark, target=target, shift=sh)
        typ = int(pt[a + 1])
        target = self.group(cn, cb, level - 1, bases, typ, mark, label)
        text = "%s → %d %s tables%s" % (label, cnt, child, was)
        self.edges.append(Edge(nid, port, target, "table", mark))
        return Row(port, "group", level, lo, hi, text, mark, target=target, shift=sh)

    def more_row(self, port, E, t, tb, level, base, i0, a, b, group=None):
        lo, hi = i0 + a, i0 + b
        if self.bef is None:
            summ, folios = self.entries_summary(self.now, t, level, lo, hi)
        else:
            now_l = self.leaves_of_entries(self.now, t, level, base, lo, hi)
            summ, folios = self.summary_text(*now_l[:3])
        text = "%s: more runs, not drawn: %s" % (self.idx_text(level, lo, hi), summ)
        if group:
            text += " (in table k = 0%s)" % (", folios + k*%d in table k" % group[0]
                                             if group[0] else "")
            folios = tuple(sorted({f + kk * group[0] for f in folios for kk in range(group[2])}))
        mark = ""
        if self.bef is not None:
            d, changed = self.diff_text(now_l, self.leaves_of_entries(self.bef, tb, level, base, lo, hi))
            if changed:
                mark = "changed"
                text += d
        return Row(port, "more", level, lo, hi, text, mark, shift=self.g.level_shift(level),
                   folios=folios)

    def group(self, cn, cb, level, bases, typ, mark, parent_label):
        K = int(cn.size)
        code = typ - _P_GROUP
        S_span = int(bases[1] - bases[0])
        if code == 1:
            kf, kp = 0, S_span >> self.ps
        elif code >= 2:
            kf, kp = code - 2, 0
        else:
            kf, kp = 0, 0
        gid = "%sg%d" % (self.prefix, int(cn[0]))
        slot = self._reserve()
        rows = self.rows(gid, int(cn[0]), int(cb[0]), level, int(bases[0]), group=(kf, kp, K))
        tabs = tuple(cn.tolist())
        self.table_node.update(dict.fromkeys(tabs, gid))
        sub = "%s · table k = 0..%d covers %#x + k*%s" % (
            parent_label, K - 1, int(bases[0]), fmt_size(S_span))
        lines = (Line("tables %s" % _ranges(cn, cap=3), style="muted"),)
        self.nodes[slot] = Node(
            id=gid, kind="group", title="%d %s tables, each:" % (K, self.lname(level)),
            subtitle=sub, rows=tuple(rows), lines=lines, mark=mark, level=level,
            tables=tabs, count=K, column=self.column, cluster=self.cluster)
        return gid

    # -- processes ------------------------------------------------------------------------------
    def vma_text(self, v, view) -> str:
        g = self.g
        fs = view.files.get(v.file)
        h = g.hstates[fs.hstate] if fs is not None else None
        bits = ["VMA %#x–%#x (%s)" % (v.start, v.end, fmt_size(v.end - v.start)),
                "%s#%d @%#x" % (fs.name if fs else "file", v.file, v.pgoff << g.page_shift)]
        if h is not None:
            bits.append("%s pages" % fmt_size(h.size))
        if not v.shared:
            bits.append("MAP_PRIVATE")
        if v.hgm:
            bits.append("HGM")
        if v.uffd:
            bits.append("uffd " + "|".join(v.uffd_modes))
        return " · ".join(bits)

    def process(self, pid, start, end):
        now_mm = self.now.mms.get(pid)
        bef_mm = self.bef.mms.get(pid) if self.bef is not None else None
        alive = now_mm is not None and now_mm.alive
        alive_b = bef_mm is not None and bef_mm.alive
        self.cluster = "%sp%d" % (self.prefix, pid)
        nid = "%sproc%d" % (self.prefix, pid)
        slot = self._reserve()
        mark = ""
        if self.bef is not None and alive and not alive_b:
            mark = "new"
        elif self.bef is not None and alive_b and not alive:
            mark = "removed"
        vmas_now = now_mm.vmas if alive else ()
        vmas_bef = bef_mm.vmas if alive_b else ()
        lines = []
        if alive:
            lines.append(Line("mm: PGD table %d" % now_mm.pgd, style="muted"))
        else:
            lines.append(Line("exited", "removed" if mark == "removed" else ""))
        for v in vmas_now:
            lines.append(Line(self.vma_text(v, self.now),
                              "new" if self.bef is not None and v not in vmas_bef else ""))
        for v in vmas_bef:
            if v not in vmas_now:
                lines.append(Line(self.vma_text(v, self.bef), "removed"))
        if not vmas_now and not vmas_bef:
            lines.append(Line("no VMAs", style="muted"))
        if start is None or end is None:
            spans = [(v.start, v.end) for v in vmas_now + vmas_bef]
            s0 = min((s for s, _ in spans), default=0) if start is None else start
            e0 = max((e for _, e in spans), default=0) if end is None else end
        else:
            s0, e0 = start, end
        self.start, self.end = int(s0), int(e0)
        node = Node(id=nid, kind="process", title="process %d" % pid, lines=tuple(lines),
                    mark=mark, column=self.column, cluster=self.cluster, pid=pid)
        self.nodes[slot] = node
        if alive and self.end > self.start:
            pgd_b = bef_mm.pgd if alive_b else 0
            target = self.table(now_mm.pgd, pgd_b, self.g.levels, 0, mark)
            self.edges.append(Edge(nid, "", target, "root", mark))
        for v in vmas_now + vmas_bef:
            self.files_shown.add(v.file)

    # -- folios -------------------------------------------------------------------------------
    def folio_lines(self, f):
        """(used, lines, strip, mark) of folio ``f``; folios with the same counters, use and
        (without subpage mapcounts) before-state share one answer, computed once."""
        now, bef = self.now, self.bef
        used = bool(now.folio_used[f])
        used_b = bool(bef.folio_used[f]) if bef is not None else used
        c = now.counters(f)
        cb = bef.counters(f) if bef is not None else c
        if getattr(now.scheme, "subpage_mapcounts", None) is not None:
            return self._folio_lines(f, used, used_b, c, cb)
        key = (used, used_b, tuple(c.items()), tuple(cb.items()))
        hit = self._folio_lines_seen.get(key)
        if hit is None:
            hit = self._folio_lines_seen[key] = self._folio_lines(f, used, used_b, c, cb)
        return hit

    def _folio_lines(self, f, used, used_b, c, cb):
        now, bef = self.now, self.bef
        g = self.g
        imax = g.INT_MAX
        half = imax // 2
        lines = []

        def num(key, label):
            v, o = c[key], cb[key]
            txt = "%s %s" % (label, format(v, ","))
            if v != o:
                return Line(txt + " (was %s)" % format(o, ","), "changed")
            return Line(txt)

        if not used:
            lines.append(Line("free (in the pool)", "removed" if used_b and bef is not None else "",
                              "muted"))
        lines.append(num("refcount", "refcount"))
        rc = c["refcount"]
        d_half, d_max = half - rc, imax - rc
        if rc < 0:
            lines.append(Line("below zero: the counter wrapped (INT_MAX %s, INT_MIN %s)"
                              % (format(imax, ","), format(g.INT_MIN, ",")), style="muted"))
        else:
            lines.append(Line("to INT_MAX/2: %s · to INT_MAX: %s" % (
                format(d_half, ",") if d_half >= 0 else "past it by %s" % format(-d_half, ","),
                format(d_max, ",")), style="muted"))
        lines.append(num("entire_mapcount", "entire_mapcount"))
        lines.append(num("mapcount", "mapcount"))
        guard = self.m.scheme.guard
        if guard == "int_max_half" and rc > half:
            lines.append(Line("GUARDED: refcount > INT_MAX/2, new references refused",
                              style="alert"))
        elif guard == "sign" and used and rc <= 0:
            lines.append(Line("GUARDED: refcount <= 0, new references refused", style="alert"))
        elif guard == "sign_posted" and used and (rc < 0 or rc == imax):
            lines.append(Line("GUARDED: refcount + 1 <= 0 (v2 35/46 as posted: the test counts "
                              "the lookup's own reference), new references refused",
                              style="alert"))
        if c.get("locked"):
            lines.append(Line("LOCKED, %d reference(s) leaked: a refused lookup returned without "
                              "folio_unlock()/folio_put() (v2 35/46 as posted); every later "
                              "lookup hangs" % c["leaked"],
                              "changed" if not cb.get("locked") else "", "alert"))
        if c["wrapped"]:
            lines.append(Line("WRAPPED: a counter overflowed past INT_MAX (%s)" % format(imax, ","),
                              "changed" if not cb["wrapped"] else "", "alert"))
        strip = None
        sub = now.subpage_mapcounts(f)
        if sub is not None:
            vals, mixed, per = downsample(sub)
            if bef is not None:
                subb = bef.subpage_mapcounts(f)
                ch = np.asarray(sub != subb)
                nb = vals.size
                if nb * per != ch.size:
                    ch = np.concatenate([ch, np.zeros(nb * per - ch.size, bool)])
                chb = ch.reshape(nb, per).any(1)
            else:
                chb = np.zeros(vals.size, bool)
            strip = Strip(tuple(int(x) for x in vals), tuple(bool(x) for x in mixed),
                          tuple(bool(x) for x in chb), int(per), int(sub.size))
        mark = ""
        if bef is not None:
            if used and not used_b:
                mark = "new"
            elif used_b and not used:
                mark = "removed"
            elif any(ln.mark for ln in lines) or (strip is not None and any(strip.changed)):
                mark = "changed"
        return used, tuple(lines), strip, mark

    def folios(self):
        now = self.now
        fids = set(self.folios_seen)
        for view in (now, self.bef):
            if view is None:
                continue
            for fid in self.files_shown:
                fs = view.files.get(fid)
                if fs is not None:
                    fids.update(fs.pc[fs.pc >= 0].tolist())
        fids = sorted(x for x in fids if 0 <= x < now.nr_folios)
        groups = []
        at = np.asarray(fids, np.int64)
        files = now.folio_file[at].tolist()
        indexes = now.folio_index[at].tolist()
        hstates = now.folio_hstate[at].tolist()
        for f, fi, idx, hs in zip(fids, files, indexes, hstates):
            used, lines, strip, mark = self.folio_lines(f)
            if fi < 0:
                idx = -1
            key = (hs, lines, strip, mark, fi)
            if groups and groups[-1]["key"] == key and groups[-1]["last"] == f - 1 and \
                    (idx < 0 or groups[-1]["idx_last"] == idx - 1):
                groups[-1]["last"] = f
                groups[-1]["idx_last"] = idx
                continue
            groups.append({"key": key, "first": f, "last": f, "idx_first": idx, "idx_last": idx,
                           "lines": lines, "strip": strip, "mark": mark, "file": fi})
        out = {}
        for gr in groups:
            f0, f1 = gr["first"], gr["last"]
            if self.budget is not None and len(self.nodes) + 1 > self.budget:
                raise _OverBudget()
            h = self.g.hstates[int(now.folio_hstate[f0])]
            nid = "%sf%d" % (self.prefix, f0)
            many = f1 > f0
            sub = ["%s%s" % (fmt_size(h.size), " each" if many else ""),
                   "pfn %#x%s" % (int(now.folio_pfn[f0]), "…" if many else "")]
            if gr["file"] >= 0:
                fs = now.files.get(gr["file"])
                name = fs.name if fs is not None else "file"
                sub.append("%s#%d [%s]" % (name, gr["file"], gr["idx_first"] if not many else
                                           "%d..%d" % (gr["idx_first"], gr["idx_last"])))
            elif now.folio_used[f0]:
                sub.append("anonymous")       # a MAP_PRIVATE copy: in no page cache
            lines = gr["lines"]
            if many:
                lines = (Line("each:", style="muted"),) + lines
            self.nodes.append(Node(
                id=nid, kind="folio", title="folio %d" % f0 if not many else "folios %d..%d" % (f0, f1),
                subtitle=" · ".join(sub), lines=lines, strip=gr["strip"], mark=gr["mark"],
                folios=tuple(range(f0, f1 + 1)), count=f1 - f0 + 1, column=self.column,
                cluster=self.mcluster))
            for f in range(f0, f1 + 1):
                out[f] = nid
        return out

    # -- edges to folios ----------------------------------------------------------------------
    def finish(self):
        for n in list(self.nodes):
            for r in n.rows if n is not None else ():
                self.folios_seen.update(r.folios)
        fmap = self.folios()
        seen = set()
        for n in self.nodes:
            for r in n.rows:
                if not r.folios or r.kind in ("table", "group"):
                    continue
                for f in r.folios:
                    dst = fmap.get(f)
                    if dst is None or (n.id, r.port, dst) in seen:
                        continue
                    seen.add((n.id, r.port, dst))
                    self.edges.append(Edge(n.id, r.port, dst, "leaf", r.mark))


