#!/usr/bin/env bash
# VNN-COMP harness: run_instance.sh v1 <category> <onnx> <vnnlib> <result_file> <timeout_seconds>
# Writes the result file: first line sat / unsat / unknown (or error), then for sat the
# counterexample ((X_i v) ... (Y_j v)), as the competition's scripts read it.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
check_version "$@"
check_count 6 "run_instance.sh v1 <category> <onnx> <vnnlib> <result_file> <timeout>" "$@"
ONNX="$3"
VNNLIB="$4"
RESULT="$5"
TIMEOUT="$6"
OPTPRUNE="${OPTPRUNE:-$ROOT/.venv/bin/optprune}"
METHOD="${OPTPRUNE_METHOD:-auto}"
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
