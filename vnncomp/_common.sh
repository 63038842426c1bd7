# Sourced by the VNN-COMP scripts of this folder (not a harness entry point): the version check, the argument
# count check, and the paths they share (prepare_instance.sh stops the run that run_instance.sh records in PIDFILE).
VERSION_STRING=v1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PIDFILE="${TMPDIR:-/tmp}/optprune_vnncomp.pid"

# check_version "$@": the first argument must be the harness's version string.
check_version() {
    if [ "${1:-}" != "$VERSION_STRING" ]; then
        echo "expected first argument (version string) '$VERSION_STRING', got '${1:-}'" >&2
        exit 1
    fi
}

# check_count <expected> <usage line> "$@"
check_count() {
    local want="$1" usage="$2"
    shift 2
    if [ "$#" -ne "$want" ]; then
        echo "usage: $usage; got $# arguments" >&2
        exit 1
    fi
}
