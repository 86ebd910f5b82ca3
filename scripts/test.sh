#!/usr/bin/env bash
# Install hgmviz and what the tests need, and run the whole test suite (CI runs this: .ci/run).
# Extra arguments go to the main pytest run (for example -x or -k fork).
#
# Unlike scripts/lab.sh it may install system packages the tests need: when `dot`, Python's venv
# module or Debian's chromium (/usr/bin/chromium, for the browser tests) is missing, it runs
# apt-get (as root, or through sudo) if it can (scripts/_install.sh, HGMVIZ_INSTALL=test).
#
# Two runs:
#   1. the tests marked `nojit` with NUMBA_DISABLE_JIT=1 (the core must behave the same without numba);
#   2. the whole suite with the JIT on (its summary line is the last line printed).
# Exit status: the first failing run's pytest status; 5 ("no tests collected") counts as a failure.
set -euo pipefail
HGMVIZ_INSTALL=test
# shellcheck source=scripts/_install.sh
source "$(dirname "${BASH_SOURCE[0]}")/_install.sh"

echo "== pytest -m nojit with NUMBA_DISABLE_JIT=1"
rc_nojit=0
NUMBA_DISABLE_JIT=1 python -m pytest -q -m nojit || rc_nojit=$?
if [ "$rc_nojit" -eq 5 ]; then
    echo "test.sh: no test is marked nojit: the JIT-off run tested nothing" >&2
fi

echo "== pytest (JIT on)"
rc_main=0
python -m pytest -q "$@" || rc_main=$?

if [ "$rc_nojit" -ne 0 ]; then
    echo "test.sh: the NUMBA_DISABLE_JIT=1 run failed (pytest exit $rc_nojit)" >&2
fi
if [ "$rc_main" -ne 0 ]; then
    exit "$rc_main"
fi
exit "$rc_nojit"
