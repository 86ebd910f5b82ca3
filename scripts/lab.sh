#!/usr/bin/env bash
# Install hgmviz into .venv and open JupyterLab on the tour.
#
#   bash scripts/lab.sh            start JupyterLab; the URL it prints opens the tour
#   bash scripts/lab.sh --check    install, then check the set-up end to end (dot, packages, the tour
#                                  runs headless, the server starts and serves the tour and the
#                                  glossary) and stop: no long-lived server
#   bash scripts/lab.sh --edit-chapters   open the tracked chapters in notebooks/ (a teacher editing them)
#   bash scripts/lab.sh ARGS...    extra arguments go to `jupyter lab` (e.g. --no-browser, --port 8899)
#
# A student works in my-notebooks/ (git-ignored): a copy of the chapters made on the first run and
# brought up to date on later runs where the student has not edited it (scripts/_my_notebooks.py), so
# running and editing a chapter never changes a tracked file and `git pull` always applies.
#
# Needs Python >= 3.11 and Graphviz's `dot` on PATH, nothing else: no root, no apt-get, no browser
# on the machine (scripts/_install.sh says how to get `dot` when it is missing).
set -euo pipefail
check=0
chapters=my-notebooks
if [ "${1:-}" = "--check" ]; then
    check=1
    shift
fi
if [ "${1:-}" = "--edit-chapters" ]; then
    chapters=notebooks
    shift
fi
HGMVIZ_INSTALL=lab
# shellcheck source=scripts/_install.sh
source "$(dirname "${BASH_SOURCE[0]}")/_install.sh"

# JupyterLab settings for this environment: open Markdown notebooks (jupytext) as notebooks, no news
# toast. overrides.json in the environment's lab settings folder (Binder's postBuild does the same).
settings="$(python -c 'import sys; print(sys.prefix)')/share/jupyter/lab/settings"
mkdir -p "$settings"
cp scripts/jupyterlab/overrides.json "$settings/overrides.json"

# The student's copy of the chapters (my-notebooks/, git-ignored), made or brought up to date.
if [ "$chapters" = my-notebooks ]; then
    python scripts/_my_notebooks.py "$HGMVIZ_ROOT"
fi

# The tour: a Markdown notebook (jupytext) or an .ipynb, whichever the repository holds.
tour=""
for t in "$chapters/00-tour.md" "$chapters/00-tour.ipynb"; do
    if [ -f "$t" ]; then tour="$t"; break; fi
done
[ -n "$tour" ] || { _say "$chapters/00-tour.md (or .ipynb) not found"; exit 1; }

# Rooted at the repository so that the notebooks' links to docs/ (the glossary) resolve; the URL the
# server prints (and opens, when there is a browser) is the tour's.
lab_args=(--ip 127.0.0.1 "--ServerApp.root_dir=$HGMVIZ_ROOT" "--LabApp.default_url=/lab/tree/$tour")
if [ "$(id -u)" -eq 0 ]; then
    lab_args+=(--allow-root)   # JupyterLab refuses to start as root without it
fi

if [ "$check" -eq 1 ]; then
    exec python scripts/_lab_check.py "$tour" "${lab_args[@]}" "$@"
fi
_say "starting JupyterLab on $tour (Ctrl-C stops it); open the URL below if no browser opens"
exec jupyter lab "${lab_args[@]}" "$@"
