"""``python -m hgmviz.kernelcheck``: the same as ``hgmviz kernel-check``."""
import sys

from .cli import main

sys.exit(main())
