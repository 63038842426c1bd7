#!/usr/bin/env bash
# VNN-COMP harness: run_instance.sh v1 <category> <onnx> <vnnlib> <result_file> <timeout_seconds>
# Writes the result file: first line sat / unsat / unknown (or error), then for sat the
# counterexample ((X_i v) ... (Y_j v)), as the competition's scripts read it.
set -uo pipefail
VERSION_STRING=v1
if [ "${1:-}" != "$VERSION_STRING" ]; then
    echo "expected first argument (version string) '$VERSION_STRING', got '${1:-}'" >&2
    exit 1
fi
if [ "$#" -ne 6 ]; then
    echo "usage: run_instance.sh v1 <category> <onnx> <vnnlib> <result_file> <timeout>; got $# arguments" >&2
    exit 1
fi
ONNX="$3"
VNNLIB="$4"
RESULT="$5"
TIMEOUT="$6"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OPTPRUNE="${OPTPRUNE:-$ROOT/.venv/bin/optprune}"
METHOD="${OPTPRUNE_METHOD:-auto}"
PIDFILE="${TMPDIR:-/tmp}/optprune_vnncomp.pid"
rm -f "$RESULT"
"$OPTPRUNE" verify "$ONNX" "$VNNLIB" --timeout "$TIMEOUT" --method "$METHOD" --out "$RESULT" --force &
echo $! > "$PIDFILE"
wait $!
STATUS=$?
rm -f "$PIDFILE"
if [ ! -s "$RESULT" ]; then
    echo "error" > "$RESULT"
    echo "optprune verify exited with status $STATUS and wrote no result" >&2
fi
exit 0
