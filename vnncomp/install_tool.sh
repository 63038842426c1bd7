#!/usr/bin/env bash
# VNN-COMP harness: install_tool.sh v1
# Installs optprune (CPU only) into a virtual environment next to this folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
check_version "$@"
python3 -m venv "$ROOT/.venv"
"$ROOT/.venv/bin/python" -m pip install --upgrade pip
"$ROOT/.venv/bin/python" -m pip install -e "$ROOT"
"$ROOT/.venv/bin/optprune" --help > /dev/null
echo "optprune installed in $ROOT/.venv"
