# shellcheck shell=bash
# Shared install step, sourced by scripts/lab.sh and scripts/test.sh (not run on its own).
#
# On a fresh Debian machine with Python >= 3.11 it:
#   1. installs Graphviz's `dot` with apt-get when `dot` is missing (and python3-venv when venv is missing),
#      and Debian's chromium (for tests/test_browser.py) when /usr/bin/chromium is missing,
#   2. creates the virtual environment .venv and installs hgmviz editable with its test extra,
#      pinned by requirements/constraints.txt,
#   3. activates .venv and exports NUMBA_CACHE_DIR (a writable folder: numba ignores read-only ones).
# Step 2 is skipped when .venv already holds exactly this pyproject.toml + constraints (stamp file).
# Leaves the shell in the repository root. Set HGMVIZ_PYTHON to choose the interpreter.

set -euo pipefail

HGMVIZ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HGMVIZ_ROOT"

_say() { printf '[hgmviz setup] %s\n' "$*" >&2; }

# Run a command as root: directly when root, else through sudo when present.
_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _say "need root (or sudo) to run: $*"
        return 1
    fi
}

_APT_UPDATED=0
_apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        _say "apt-get not found: install $* with your system's package manager, then run this again"
        return 1
    fi
    local log
    log="$(mktemp)"
    if [ "$_APT_UPDATED" -eq 0 ]; then
        _say "apt-get update"
        _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 ||
            { cat "$log" >&2; rm -f "$log"; return 1; }
        _APT_UPDATED=1
    fi
    _say "apt-get install -y $*"
    # apt's output is shown only when it fails.
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$log" 2>&1 ||
        { cat "$log" >&2; rm -f "$log"; return 1; }
    rm -f "$log"
}

# pip prints harmless "WARNING: Location '...' is ignored" lines on some machines; drop them.
_pip_filter() { sed -u "/^WARNING: Location '.*' is ignored/d"; }

# --- 1. Graphviz's dot --------------------------------------------------------------------------
if ! command -v dot >/dev/null 2>&1; then
    _apt_install graphviz
fi

# --- 1b. Chromium, for the browser tests of the explorer (tests/test_browser.py) ---------------
# Debian's chromium, driven by the playwright Python package; never `playwright install`.
if ! [ -x /usr/bin/chromium ]; then
    _apt_install chromium
fi

# --- 2. Python and the virtual environment ------------------------------------------------------
_pick_python() {
    local c
    for c in ${HGMVIZ_PYTHON:-} python3.11 python3.12 python3.13 python3 python; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            "$c" -c 'import sys; print(sys.executable)'   # the real interpreter, not a pyenv shim
            return 0
        fi
    done
    return 1
}

VENV="$HGMVIZ_ROOT/.venv"
STAMP="$VENV/.hgmviz-install-stamp"

if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    PY="$(_pick_python)" || { _say "Python >= 3.11 not found (set HGMVIZ_PYTHON)"; exit 1; }
    if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        # Debian splits venv/ensurepip into python3.X-venv.
        PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        _apt_install "python${PYVER}-venv" || _apt_install python3-venv
    fi
    rm -rf "$VENV"
    _say "creating .venv with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV"
fi

_install_key() {
    {
        cat pyproject.toml requirements/constraints.txt
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

KEY="$(_install_key)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] &&
    "$VENV/bin/python" -c 'import importlib.metadata as m; m.version("hgmviz")' >/dev/null 2>&1; then
    _say ".venv is up to date (skipping pip)"
else
    _say "installing Python packages into .venv (about a minute on a cold machine)"
    _t0=$SECONDS
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
        -c requirements/constraints.txt -e '.[test]' 2>&1 | _pip_filter
    echo "$KEY" >"$STAMP"
    _say "pip install done in $((SECONDS - _t0)) s"
fi

# --- 3. Environment -----------------------------------------------------------------------------
# shellcheck disable=SC1091
VIRTUAL_ENV_DISABLE_PROMPT=1 source "$VENV/bin/activate"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$HGMVIZ_ROOT/.numba_cache}"
mkdir -p "$NUMBA_CACHE_DIR"
