"""m.meminfo(): still the dict callers index, shown as /proc/meminfo and sysfs show it."""
import pickle

import hgmviz as hv

MIB2, GIB = 2 << 20, 1 << 30


def _machine():
    m = hv.Machine(nr_hugepages={MIB2: 4, GIB: 1})
    f = m.memfd_create(size=3 * MIB2, hstate=MIB2)
    p = m.spawn()
    a = p.mmap(f, length=3 * MIB2)          # reserves 3 hugepages
    p.touch(a)                               # allocates one: Free 3, Rsvd 2
    return m


def test_meminfo_stays_a_dict_of_the_same_values():
    mi = _machine().meminfo()
    assert isinstance(mi, dict)
    assert mi[MIB2] == {"HugePages_Total": 4, "HugePages_Free": 3, "HugePages_Rsvd": 2,
                        "HugePages_Surp": 0, "Hugepagesize": 2048}
    assert mi[GIB]["HugePages_Total"] == 1 and mi[GIB]["HugePages_Free"] == 1
    plain = mi.as_dict()
    assert type(plain) is dict and plain == mi and all(type(v) is dict for v in plain.values())
    plain[MIB2]["HugePages_Free"] = 99                      # a copy: the view is unchanged
    assert mi[MIB2]["HugePages_Free"] == 3
    back = pickle.loads(pickle.dumps(mi))
    assert back == mi and str(back) == str(mi)


def test_text_is_proc_meminfo_then_sysfs():
    lines = str(_machine().meminfo()).splitlines()
    # hugetlb_report_meminfo (mm/hugetlb.c v6.2): the default hstate's lines, then Hugetlb,
    # the kB of every pool (4 x 2048 kB + 1 x 1048576 kB)
    assert lines[1:7] == ["HugePages_Total:       4",
                          "HugePages_Free:        3",
                          "HugePages_Rsvd:        2",
                          "HugePages_Surp:        0",
                          "Hugepagesize:       2048 kB",
                          "Hugetlb:         1056768 kB"]
    assert lines[8].split() == ["/sys/kernel/mm/hugepages/", "nr_hugepages", "free_hugepages",
                                "resv_hugepages", "surplus_hugepages"]
    assert lines[9].split() == ["hugepages-2048kB", "4", "3", "2", "0"]
    assert lines[10].split() == ["hugepages-1048576kB", "1", "1", "0", "0"]
    assert repr(_machine().meminfo()) == "\n".join(lines)


def test_toy_geometry_default_hstate_is_the_smallest():
    m = hv.Machine(geometry="toy", nr_hugepages={32 << 10: 4, 256 << 10: 2})
    text = str(m.meminfo())
    assert "Hugepagesize:         32 kB" in text
    assert "Hugetlb:             640 kB" in text                   # 4 x 32 + 2 x 256
    assert "hugepages-256kB" in text


def test_notebook_html_table():
    h = _machine().meminfo()._repr_html_()
    assert h.count("<table>") == 2
    assert "<td style=\"text-align:left;font-family:monospace;padding:1px 8px\">HugePages_Rsvd:</td>" in h
    assert ">1056768 kB<" in h
    assert "hugepages-2048kB/" in h and "surplus_hugepages" in h
    # no colours of its own: the notebook theme's (light or dark) apply
    assert "color" not in h and "background" not in h
