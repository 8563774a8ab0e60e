#!/usr/bin/env bash
# Run libFuzzer targets one after the other (make fuzz).
#   FUZZ_SECONDS=60 tests/fuzz/run-fuzz.sh TARGET...
# Each build/fuzz/fuzz_T runs FUZZ_SECONDS under ASan/UBSan at nice 10,
# starting from the seed corpus tests/fuzz/corpus/T; inputs it finds go to
# build/fuzz/corpus/T (the tree's corpus is left alone), a crashing input to
# build/fuzz/artifacts/T/.  Exit status 1 when any target found something.
set -u
secs=${FUZZ_SECONDS:-60}
cd "$(dirname "$0")/../.." || exit 2
found=()
for t in "$@"; do
	bin=build/fuzz/fuzz_$t
	work=build/fuzz/corpus/$t
	art=build/fuzz/artifacts/$t
	log=build/fuzz/fuzz_$t.log
	if [[ ! -x $bin ]]; then
		echo "fuzz: $bin is not built (make fuzz-build)" >&2
		exit 2
	fi
	mkdir -p "$work" "$art"
	dict=()
	[[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")
	echo "fuzz: $t for ${secs}s (log $log)"
	nice -n 10 "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$art/" \
		"${dict[@]}" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if (( rc != 0 )); then
		echo "fuzz: $t FOUND a crash (exit $rc): $(ls "$art" | tr '\n' ' ')"
		grep -m1 -E 'ERROR: |SUMMARY: |property failed' "$log" | sed 's/^/    /' ||
			head -n 3 "$log" | sed 's/^/    /'
		found+=("$t")
	else
		echo "fuzz: $t clean: ${runs:-?} inputs, ${cov:-cov: ?} edges, corpus $(ls "$work" | wc -l) files"
	fi
done
if (( ${#found[@]} )); then
	echo "fuzz: findings in: ${found[*]} (reproduce: build/tests/fuzz_T FILE)"
	exit 1
fi
