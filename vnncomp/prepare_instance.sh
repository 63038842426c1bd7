#!/usr/bin/env bash
# VNN-COMP harness: prepare_instance.sh v1 <category> <onnx> <vnnlib>
# Nothing to convert: optprune reads the ONNX file and the VNN-LIB file directly.
# Checks that both files exist and that no verifier of ours is still running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
check_version "$@"
check_count 4 "prepare_instance.sh v1 <category> <onnx> <vnnlib>" "$@"
ONNX="$3"
VNNLIB="$4"
for f in "$ONNX" "$VNNLIB"; do
    if [ ! -f "$f" ]; then
        echo "file not found: $f" >&2
        exit 1
    fi
done
# Kill leftovers of an earlier run_instance.sh of this tool (by their recorded process id only).
if [ -f "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
fi
exit 0
