#!/usr/bin/env bash
# Runs every cargo-fuzz target for a time budget, one worker each, one after the other, and
# prints executions and crashes per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]      (default: $FUZZ_SECONDS or 60; all)
#
# With FUZZ_RUNS=N a target stops after N executions (or the time budget, whichever first).
# Extra libFuzzer flags per target: fuzz/options/<target> (one line).
# Uses the pinned nightly of scripts/router-build.sh (installed by rustup if missing) and
# installs cargo-fuzz if missing. Each target starts from its committed seed corpus
# fuzz/seeds/<target> (small, minimised from earlier campaigns) and grows a working corpus in
# fuzz/corpus/<target>; crashes land in fuzz/artifacts/<target>/ (neither is committed). A crash does not
# end a target's run: it is counted and fuzzing resumes until the budget is spent.
# Exit status 1 if any target crashed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT/fuzz"

NIGHTLY="${NOPORTS_NIGHTLY:-nightly-2026-05-19}"
SECS="${1:-${FUZZ_SECONDS:-60}}"
[ $# -gt 0 ] && shift
rustup toolchain list | grep -q "^$NIGHTLY" || rustup toolchain install --profile minimal "$NIGHTLY"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	mapfile -t targets < <(cargo "+$NIGHTLY" fuzz list)
fi
# FUZZ_SANITIZER: cargo-fuzz's -s (default none). The library forbids `unsafe`, so what the
# targets can find is panics, hangs and runaway memory, which libFuzzer reports without a
# sanitizer; AddressSanitizer (FUZZ_SANITIZER=address) only adds checks of the dependencies'
# unsafe code, at 5-7x fewer executions per second (atserver_verb: ~1,250 against ~9,000).
SANITIZER="${FUZZ_SANITIZER:-none}"
# FUZZ_NO_BUILD=1: use the binaries already built (e.g. several runs side by side).
built_with="$SANITIZER"
if [ -n "${FUZZ_NO_BUILD:-}" ]; then
	built_with="as last built"
else
	cargo "+$NIGHTLY" fuzz build -O -s "$SANITIZER" >/dev/null
fi

bin_dir="target/x86_64-unknown-linux-gnu/release"
failed=0
summary=()
for t in "${targets[@]}"; do
	mkdir -p "corpus/$t" "artifacts/$t"
	log="artifacts/$t/last-run.log"
	: >"$log"
	execs=0
	crashes=0
	extra=()
	[ -f "options/$t" ] && read -r -a extra <"options/$t"
	t0=$(date +%s)
	end=$((t0 + SECS))
	while :; do
		left=$((end - $(date +%s)))
		[ "$left" -gt 0 ] || break
		runs=()
		if [ -n "${FUZZ_RUNS:-}" ]; then
			[ "$execs" -lt "$FUZZ_RUNS" ] || break
			runs=(-runs=$((FUZZ_RUNS - execs)))
		fi
		# -print_final_stats gives the execution count, also after a crash.
		seeds=()
		[ -d "seeds/$t" ] && seeds=("seeds/$t")
		if "$bin_dir/$t" "corpus/$t" "${seeds[@]}" -artifact_prefix="artifacts/$t/" -max_total_time="$left" \
			-print_final_stats=1 -timeout=10 -rss_limit_mb=1024 "${runs[@]}" "${extra[@]}" >>"$log" 2>&1; then
			status=0
		else
			status=$?
		fi
		n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
		execs=$((execs + ${n:-0}))
		# Count each run's stats once.
		sed -i 's/stat::number_of_executed_units/counted_units/' "$log"
		if [ "$status" -ne 0 ]; then
			crashes=$((crashes + 1))
			failed=1
			[ "$crashes" -ge 20 ] && break
		fi
	done
	corpus=$(find "corpus/$t" -type f | wc -l)
	line=$(printf '%-15s %12d execs in %ds, %d crashes, corpus %d files' "$t" "$execs" "$(($(date +%s) - t0))" "$crashes" "$corpus")
	echo "$line"
	summary+=("$line")
done
echo "--- fuzz summary (nightly $NIGHTLY, sanitizer $built_with, 1 worker per target) ---"
printf '%s\n' "${summary[@]}"
exit "$failed"
