"""Every function name in the simulator's call paths is classified by hgmviz.kernel_names: newer
than v6.2 (with its version and v6.2 name), HGM-only, the same in v6.2, or the user's call (issue 14:
"call paths labelled 6.2 that use 6.3/6.4 names")."""
import re
from pathlib import Path

import pytest

import hgmviz as hv
from hgmviz import kernel_names as kn
from hgmviz.ops import OPERATIONS
from hgmviz.scenarios import list_scenarios, load_scenario

PKG = Path(hv.__file__).resolve().parent
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _source_names():
    """Names the mm code appends to Machine.call_path (string literals in call_path statements)."""
    names = set()
    for f in PKG.rglob("*.py"):
        s = f.read_text()
        for m in re.finditer(r'call_path(?:\s*\+=\s*|\s*=\s*|\.append\()\s*(\[[^\]]*\]|"[^"]*")', s):
            names.update(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', m.group(1)))
    return names


def test_every_call_path_name_is_classified():
    names = _source_names()
    for op in OPERATIONS.values():
        names.update(NAME.findall(op.spec.call_path))
    for info in list_scenarios():
        s = load_scenario(info.name)
        for step in s.history:
            for path in step.call_paths.values():
                names.update(path)
    assert "hugetlb_mfill_atomic_pte" in names and "hugetlb_no_page" in names
    for name in sorted(names):
        kn.version_note(name)                   # KeyError for an unclassified name
    groups = [set(kn.RENAMED_SINCE_V6_2), set(kn.HGM_ONLY), kn.SAME_IN_V6_2, kn.USER_API]
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            assert not a & b, a & b


@pytest.mark.parametrize("name,version,want", [
    ("hugetlb_mfill_atomic_pte", "v6.2", "hugetlb_mcopy_atomic_pte"),
    ("hugetlb_mfill_atomic_pte", "6.3", "hugetlb_mcopy_atomic_pte"),
    ("hugetlb_mfill_atomic_pte", "6.4", "hugetlb_mfill_atomic_pte"),
    ("mfill_atomic_hugetlb", "6.2", "__mcopy_atomic_hugetlb"),
    ("do_vmi_munmap", "6.2", "do_mas_munmap"),
    ("do_vmi_munmap", "6.3", "do_vmi_munmap"),
    ("alloc_hugetlb_folio", "6.2", "alloc_huge_page"),
    ("hugetlb_add_file_rmap", "6.7", "page_dup_file_rmap(page, true)"),
    ("hugetlb_add_file_rmap", "6.18", "hugetlb_add_file_rmap"),
    ("hugetlb_no_page", "6.2", "hugetlb_no_page"),
])
def test_name_at(name, version, want):
    assert kn.name_at(name, version) == want


def test_version_notes_and_bad_input():
    assert kn.version_note("hugetlb_mfill_atomic_pte") == (
        "hugetlb_mfill_atomic_pte: mainline since v6.4; v6.2 has hugetlb_mcopy_atomic_pte")
    assert "HGM v2 34/46" in kn.version_note("hugetlb_collapse")
    assert kn.version_note("UFFDIO_CONTINUE").endswith("not a kernel function")
    with pytest.raises(KeyError, match="not a name of the simulator's call paths"):
        kn.version_note("hugetlb_frobnicate")
    with pytest.raises(TypeError, match="must be a function name"):
        kn.name_at(3)
