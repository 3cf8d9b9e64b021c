#!/bin/sh
# Run every test and print one summary line: "N passed, M failed".
#   tests/run.sh BUILD_DIR
# Unit tests are $BUILD/tests/unit/test_*; CLI tests are tests/cli/*.sh;
# fuzz replays are $BUILD/tests/fuzz/replay_NAME, each run once over every
# saved input in tests/fuzz/corpus/NAME/ (seeds and past crashes).
# Every test program prints TAP-style "ok - name" / "not ok - name" lines;
# a program that crashes or exits non-zero without a "not ok" line counts
# as one extra failure, so a crash can never pass silently.
BUILD=${1:-build}
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
export SBX_BIN="$BUILD" SBX_TOP="$TOP"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
pass=0 fail=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() {
	name=$1; shift
	start=$(date +%s)
	timeout 900 "$@" >"$out" 2>&1
	rc=$?
	p=$(grep -c '^ok ' "$out")
	f=$(grep -c '^not ok ' "$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "not ok - $name exited with status $rc" >>"$out"
	fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "not ok - $name ran no test" >>"$out"
	fi
	pass=$((pass + p)); fail=$((fail + f))
	printf '%-28s %4d passed %3d failed  (%ss)\n' "$name" "$p" "$f" $(( $(date +%s) - start ))
	if [ "$f" -ne 0 ]; then
		sed 's/^/    /' "$out" | grep -v '^    ok ' | tail -40
	fi
}
for t in "$BUILD"/tests/unit/test_*; do
	[ -x "$t" ] || continue
	run "$(basename "$t")" "$t"
done
for t in "$BUILD"/tests/fuzz/replay_*; do
	[ -x "$t" ] || continue
	name=${t##*/replay_}
	run "replay_$name" "$t" "$TOP/tests/fuzz/corpus/$name"
done
for t in "$TOP"/tests/cli/*.sh; do
	[ -f "$t" ] || continue
	run "$(basename "$t")" bash "$t"
done
if command -v mandoc >/dev/null 2>&1 && ls "$TOP"/man/*.[0-9] >/dev/null 2>&1; then
	if mandoc -Tlint -W warning "$TOP"/man/*.[0-9] >"$out" 2>&1; then
		pass=$((pass + 1)); echo "man pages (mandoc -Tlint)       ok"
	else
		fail=$((fail + 1)); echo "man pages (mandoc -Tlint)       FAILED"; cat "$out"
	fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
