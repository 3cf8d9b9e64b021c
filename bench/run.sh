#!/bin/sh
# Run every benchmark. Usage: sh bench/run.sh BUILD_DIR [ARGS...]
# (`make bench` calls `sh bench/run.sh build`); ARGS go to each benchmark,
# e.g. --quick for a smoke test.
set -e
BUILD=${1:-build}
[ $# -gt 0 ] && shift
"$BUILD"/bench/vfs "$@"
