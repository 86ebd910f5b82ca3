"""hgmviz: see, touch and test how hugetlb pages mapped at high granularity (HGM) count
references and mappings — the January 2023 LKML debate as a simulator.

The scripting API (``import hgmviz as hv``)::

    m = hv.Machine(nr_hugepages={2 << 20: 8, 1 << 30: 1})
    f = m.memfd_create(size=8 << 20, hstate=2 << 20)
    p = m.spawn()
    a = p.mmap(f, length=4 << 20)
    p.touch(a + 0x5000)
    f.folio_at(0).refcount
"""
from .errors import (PartialProgress, ProcessExited, SigBus, SigSegv, SimError, StateKept,
                     TaskHung, Unsupported, UserfaultPending, VM_FAULT_OOM, VM_FAULT_SIGBUS)
from .geometry import (INT_MAX, PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PUD_SHIFT, TOY, X86_64,
                       X86_64_5LEVEL, Geometry, Hstate, HugetlbLevel, KernelProfile)
from . import notebook_errors as _notebook_errors
from .mm import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_COLLAPSE, MADV_DONTNEED,
                 MADV_REMOVE, MADV_SPLIT, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_EXEC, PROT_NONE,
                 PROT_READ, PROT_WRITE, File, Folio, Machine, PagemapEntry, Process, Vma)
from .overflow import overflow_math
from .schemes import SCHEMES
from .vmemmap import vmemmap_cost, vmemmap_machine_cost

from .notebook_errors import verbose_errors

__version__ = "0.1.0"

# In IPython (a notebook's kernel, the ipython shell): hgmviz's errors message first, the
# frames inside the package hidden (hv.verbose_errors() shows them); nothing elsewhere.
_notebook_errors.install()

#: Names that load their module on first use, not at ``import hgmviz``: the machine is all a
#: script needs to start (cold start: import + first fault), the renderer, the scenarios and
#: the session (with the operation records) come when asked for.
_LAZY = {"draw": "render", "draw_compare": "render", "list_scenarios": "scenarios",
         "load_scenario": "scenarios", "Session": "session"}
#: Subpackages ``import hgmviz`` used to load as a side effect; ``hgmviz.<name>`` still works.
_LAZY_MODULES = ("render", "scenarios", "session", "ops", "scenario_file", "comparison")


def __getattr__(name):
    import importlib
    if name in _LAZY:
        value = getattr(importlib.import_module("." + _LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _LAZY_MODULES:
        return importlib.import_module("." + name, __name__)
    # the widget layer (ipywidgets) and the explainer load on first use, not at import
    if name in ("explore", "compare"):
        from . import widgets
        return getattr(widgets, name)
    if name == "explain":
        from .explain import explain
        return explain
    raise AttributeError("module 'hgmviz' has no attribute %r" % (name,))


__all__ = [
    "Machine", "Process", "File", "Folio", "Vma", "PagemapEntry",
    "MADV_DONTNEED", "MADV_REMOVE", "MADV_COLLAPSE", "MADV_SPLIT", "FALLOC_FL_KEEP_SIZE",
    "FALLOC_FL_PUNCH_HOLE", "PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC",
    "MREMAP_MAYMOVE", "MREMAP_FIXED",
    "SigBus", "SigSegv", "UserfaultPending", "PartialProgress", "ProcessExited", "Unsupported",
    "SimError", "StateKept", "TaskHung", "VM_FAULT_OOM", "VM_FAULT_SIGBUS",
    "Geometry", "Hstate", "HugetlbLevel", "KernelProfile", "X86_64", "X86_64_5LEVEL", "TOY",
    "PAGE_SHIFT", "PAGE_SIZE", "PMD_SHIFT", "PUD_SHIFT", "INT_MAX", "SCHEMES",
    "overflow_math", "vmemmap_cost", "vmemmap_machine_cost", "draw", "draw_compare",
    "Session", "list_scenarios", "load_scenario", "explore", "compare", "explain",
    "verbose_errors",
]
