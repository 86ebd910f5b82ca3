# shellcheck shell=bash
# Shared install step, sourced by scripts/lab.sh and scripts/test.sh (not run on its own).
#
# The caller sets HGMVIZ_INSTALL to what it needs:
#   lab   needs Python >= 3.11 and Graphviz's `dot` already on the machine; never runs apt-get, sudo
#         or anything as root, never needs a browser. When `dot` (or Python's venv module) is
#         missing it says how to install it on each system and stops.
#   test  may install what only the tests need: when `dot`, Python's venv module or Debian's
#         chromium (/usr/bin/chromium, for the browser tests) is missing and apt-get can run (as
#         root, or through sudo), it apt-get installs them; otherwise it says what is missing (a
#         missing chromium then fails the browser tests under CI=true and skips them elsewhere).
# Then:
#   1. creates the virtual environment .venv and installs hgmviz editable, pinned by
#      requirements/constraints.txt: `-e .` for lab, `-e '.[test]'` for test;
#   2. activates .venv and exports NUMBA_CACHE_DIR (a writable folder: numba ignores read-only ones).
# Step 1 is skipped when .venv already holds this pyproject.toml + constraints + interpreter with at
# least the extras asked for (stamp file). Leaves the shell in the repository root.
# Set HGMVIZ_PYTHON to choose the interpreter.

set -euo pipefail

HGMVIZ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HGMVIZ_INSTALL="${HGMVIZ_INSTALL:-lab}"
cd "$HGMVIZ_ROOT"

_say() { printf '[hgmviz setup] %s\n' "$*" >&2; }

case "$HGMVIZ_INSTALL" in
    lab | test) ;;
    *) _say "HGMVIZ_INSTALL must be lab or test, not '$HGMVIZ_INSTALL'"; exit 2 ;;
esac

# How to get Graphviz's dot on each system (README.md's table says the same; tests/test_setup.py
# checks that they agree).
_graphviz_help() {
    cat >&2 <<'EOF'
[hgmviz setup] Graphviz's `dot` was not found on PATH. hgmviz draws its diagrams with it.
Install Graphviz with your system's package manager, then run this command again:
    Debian, Ubuntu:        sudo apt-get install graphviz
    Fedora, RHEL, CentOS:  sudo dnf install graphviz
    Arch:                  sudo pacman -S graphviz
    openSUSE:              sudo zypper install graphviz
    Alpine:                sudo apk add graphviz
    macOS (Homebrew):      brew install graphviz
    conda (any system):    conda install -c conda-forge graphviz
Without root: conda, or ask whoever runs the machine. `dot -V` checks it.
EOF
}

# apt-get is possible: the command exists and we are root or have sudo.
_can_apt() {
    command -v apt-get >/dev/null 2>&1 || return 1
    [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1
}

_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_APT_UPDATED=0
_apt_install() {
    _can_apt || { _say "apt-get (as root or through sudo) is not available to install $*"; return 1; }
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
    if [ "$HGMVIZ_INSTALL" = test ] && _can_apt; then
        _apt_install graphviz
    else
        _graphviz_help
        exit 1
    fi
fi

# --- 1b. Chromium, for the browser tests only (tests/test_browser.py, tests/test_explain_browser.py)
# Debian's chromium, driven by the playwright Python package; never `playwright install`.
if [ "$HGMVIZ_INSTALL" = test ] && ! [ -x /usr/bin/chromium ]; then
    if _can_apt; then
        _apt_install chromium
    else
        _say "/usr/bin/chromium is missing and apt-get cannot install it: the browser tests will" \
            "skip (and fail under CI=true). Install Debian's chromium to run them."
    fi
fi

# --- 2. Python and the virtual environment ------------------------------------------------------
_pick_python() {
    local c
    for c in ${HGMVIZ_PYTHON:-} python3.11 python3.12 python3.13 python3.14 python3 python; do
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
    PY="$(_pick_python)" || {
        _say "Python >= 3.11 not found on PATH (tried ${HGMVIZ_PYTHON:+$HGMVIZ_PYTHON, }python3.11 .." \
            "python3.14, python3, python). Install one (python.org, your package manager, pyenv," \
            "conda) or point HGMVIZ_PYTHON at it."
        exit 1
    }
    if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        # Debian and Ubuntu split venv/ensurepip into python3.X-venv.
        PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        if [ "$HGMVIZ_INSTALL" = test ] && _can_apt; then
            _apt_install "python${PYVER}-venv" || _apt_install python3-venv
        else
            _say "$PY has no venv/ensurepip module. On Debian or Ubuntu: sudo apt-get install" \
                "python${PYVER}-venv; elsewhere use a Python from python.org, pyenv or conda."
            exit 1
        fi
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

# The stamp holds "<key> <extras>"; a test install also serves the lab.
KEY="$(_install_key)"
_stamp_ok() {
    [ -f "$STAMP" ] || return 1
    local k e
    read -r k e <"$STAMP" || true
    [ "$k" = "$KEY" ] || return 1
    [ "$HGMVIZ_INSTALL" = lab ] || [ "$e" = test ] || return 1
    "$VENV/bin/python" -c 'import importlib.metadata as m; m.version("hgmviz")' >/dev/null 2>&1
}

if _stamp_ok; then
    _say ".venv is up to date (skipping pip)"
else
    if [ "$HGMVIZ_INSTALL" = test ]; then target='.[test]'; else target='.'; fi
    _say "installing Python packages into .venv: pip install -e '$target' (a minute on a cold machine)"
    _t0=$SECONDS
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
        -c requirements/constraints.txt -e "$target" 2>&1 | _pip_filter
    echo "$KEY $HGMVIZ_INSTALL" >"$STAMP"
    _say "pip install done in $((SECONDS - _t0)) s"
fi

# --- 3. Environment -----------------------------------------------------------------------------
# shellcheck disable=SC1091
VIRTUAL_ENV_DISABLE_PROMPT=1 source "$VENV/bin/activate"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$HGMVIZ_ROOT/.numba_cache}"
mkdir -p "$NUMBA_CACHE_DIR"
