"""Layer 6: the ``hgmviz`` command line (thin: each subcommand calls one package function)."""
from __future__ import annotations

import sys

USAGE = """usage: hgmviz COMMAND [ARGS]

commands:
  bench          run the benchmarks, print a Markdown table
  explain        a scenario step by step: HTML handout, text for email, SVGs
                 (hgmviz explain SCENARIO [-o FILE] [--format html|text|svg]
                 [--schemes a,b,c]; hgmviz explain --help for exit codes)
  homework       a seeded problem: hgmviz homework -s SEED [-c] (answers and why);
                 handouts and a key for a class: hgmviz homework --class N -o DIR
  kernel-check   compare the simulator with the running kernel (root)
  scenarios      list the shipped scenarios (name, title)
  warmup         compile every jitted kernel into the numba cache
"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "bench":
        from .bench import main as run
    elif cmd == "explain":
        from .explain import main as run
    elif cmd == "scenarios":
        from .explain import scenarios_main as run
    elif cmd == "homework":
        from .handout import main as run
    elif cmd == "kernel-check":
        from .kernelcheck.cli import main as run
    elif cmd == "warmup":
        from .warmup import main as run
    else:
        print("hgmviz: unknown command %r\n\n%s" % (cmd, USAGE), file=sys.stderr)
        return 2
    return int(run(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
