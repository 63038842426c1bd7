#!/usr/bin/env bash
# VNN-COMP harness: install_tool.sh v1
# Installs optprune (CPU only) into a virtual environment next to this folder.
set -euo pipefail
VERSION_STRING=v1
if [ "${1:-}" != "$VERSION_STRING" ]; then
    echo "expected first argument (version string) '$VERSION_STRING', got '${1:-}'" >&2
    exit 1
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
python3 -m venv "$ROOT/.venv"
"$ROOT/.venv/bin/python" -m pip install --upgrade pip
"$ROOT/.venv/bin/python" -m pip install -e "$ROOT"
"$ROOT/.venv/bin/optprune" --help > /dev/null
echo "optprune installed in $ROOT/.venv"
