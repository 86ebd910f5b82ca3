#!/usr/bin/env bash
# Install everything (Graphviz's dot, .venv with hgmviz) and open JupyterLab on the tour.
# Extra arguments go to `jupyter lab` (for example --no-browser or --port 8899).
set -euo pipefail
# shellcheck source=scripts/_install.sh
source "$(dirname "${BASH_SOURCE[0]}")/_install.sh"

lab_args=(--ip 127.0.0.1)
if [ "$(id -u)" -eq 0 ]; then
    lab_args+=(--allow-root)   # JupyterLab refuses to start as root without it
fi
exec jupyter lab "${lab_args[@]}" "$@" notebooks/00-tour.ipynb
