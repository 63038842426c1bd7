#!/usr/bin/env bash
# VNN-COMP harness: prepare_instance.sh v1 <category> <onnx> <vnnlib>
# Nothing to convert: optprune reads the ONNX file and the VNN-LIB file directly.
# Checks that both files exist and that no verifier of ours is still running.
set -euo pipefail
VERSION_STRING=v1
if [ "${1:-}" != "$VERSION_STRING" ]; then
    echo "expected first argument (version string) '$VERSION_STRING', got '${1:-}'" >&2
    exit 1
fi
if [ "$#" -ne 4 ]; then
    echo "usage: prepare_instance.sh v1 <category> <onnx> <vnnlib>; got $# arguments" >&2
    exit 1
fi
ONNX="$3"
VNNLIB="$4"
for f in "$ONNX" "$VNNLIB"; do
    if [ ! -f "$f" ]; then
        echo "file not found: $f" >&2
        exit 1
    fi
done
# Kill leftovers of an earlier run_instance.sh of this tool (by their recorded process id only).
PIDFILE="${TMPDIR:-/tmp}/optprune_vnncomp.pid"
if [ -f "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
fi
exit 0
