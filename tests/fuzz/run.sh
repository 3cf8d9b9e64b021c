#!/bin/sh
# Run every libFuzzer target for a while; fail if any of them crashes.
#   tests/fuzz/run.sh FUZZ_BUILD SECONDS NAME...
# Each target starts from a scratch copy of tests/fuzz/corpus/NAME/ (new
# corpus entries never go into the repository). A crash, a failed property
# (abort), a timeout (> 10 s for one input) or running out of memory leaves
# the input in FUZZ_BUILD/artifacts/ and makes the run fail.
BUILD=$1 SECONDS_EACH=$2
shift 2
TOP=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$BUILD/artifacts"
ART=$(cd "$BUILD/artifacts" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=
for name in "$@"; do
	bin="$BUILD/fuzz_$name"
	mkdir -p "$work/$name"
	cp "$TOP/tests/fuzz/corpus/$name/"* "$work/$name/" 2>/dev/null
	log="$BUILD/fuzz_$name.log"
	"$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$ART/$name-" "$work/$name" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	if [ "$rc" -eq 0 ]; then
		echo "ok - fuzz $name: ${execs:-?} runs, ${rate:-?} exec/s, $cov, corpus $(ls "$work/$name" | wc -l)"
	else
		failed="$failed $name"
		echo "not ok - fuzz $name: exit $rc (log $log)"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*fuzz property failed|artifact_prefix|Test unit written)' "$log" | head -20 | sed 's/^/    /'
		grep -E '^ +#[0-9]+ ' "$log" | head -25 | sed 's/^/    /'
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed"
	exit 1
fi
echo "fuzz: all targets ran ${SECONDS_EACH}s without a crash"
