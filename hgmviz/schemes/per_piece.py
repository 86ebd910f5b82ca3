"""``per_piece``: HGM v1 as posted (5 Jan 2023), James's "#1".

Every mapped leaf of any size takes one reference and one head (entire) mapcount:
"The mapcount for a high-granularity mapped HugeTLB page is the total number of page table
references to that page. So if we have a 2M page that is mapped in a single VMA with 512 4K
PTEs, the mapcount will be 512." (cover letter, 20230105101844.1893104-1-jthoughton@google.com);
"each new PT mapping increments the compound_mapcount by 1" (T2,
CADrL8HU-prbfx2xxXCi0RPznp5DB68-NjqqmdM+4aUeUUURhiA@mail.gmail.com); "We increment the
refcount once for each 4K mapping in 1G" (T9,
CADrL8HUdg1Fr=tLEQRkDjeTzNzzSM6EPhvDgzURxSZSBMLgjoQ@mail.gmail.com).  Only head fields are
written, so it is compatible with HVO; 8,192 full 4 KiB mappings of a 1 GiB folio overflow
the refcount (domain.md 1.4).
"""
from __future__ import annotations

from .base import Scheme
from .mainline import _apply_head_only


class PerPiece(Scheme):
    name = "per_piece"
    supports_hgm = True
    source = "HGM v1 (20230105101844.1893104-1-jthoughton@google.com), T2, T9"
    _apply = staticmethod(_apply_head_only)
