#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS from the seed corpus, then prints per
# target the executions, coverage, and crashes/hangs/out-of-memory found.
#
#   fuzz/run.sh [-j JOBS] [-k] [-b] SECONDS [TARGET...]
#
#   -j JOBS  run up to JOBS targets at once (default 1)
#   -k       keep going after a crash (libFuzzer's fork mode), to find more than one
#   -b       build only
#
# libFuzzer on the stable toolchain: coverage comes from LLVM's SanitizerCoverage pass, which
# rustc runs with the stable `-C passes=sancov-module` (no nightly `-Z sanitizer`). Needs a C++
# compiler for libFuzzer itself (g++). Inputs found are kept in fuzz/out/TARGET/corpus; crash
# inputs in fuzz/out/TARGET/artifacts. Exits 1 when any target crashed, hung or ran out of
# memory, 2 on a usage or build error. Every process it starts is stopped when it ends, also
# on Ctrl-C.
set -u -o pipefail

here="$(cd "$(dirname "$0")" && pwd)"
jobs=1 keep=0 build_only=0
while getopts "j:kb" opt; do
    case "$opt" in
        j) jobs="$OPTARG" ;;
        k) keep=1 ;;
        b) build_only=1 ;;
        *) echo "usage: $0 [-j JOBS] [-k] [-b] SECONDS [TARGET...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
seconds="${1:-}"
if ! [[ "$seconds" =~ ^[0-9]+$ && "$jobs" =~ ^[1-9][0-9]*$ ]] && [ "$build_only" = 0 ]; then
    echo "usage: $0 [-j JOBS] [-k] [-b] SECONDS [TARGET...]  (SECONDS and JOBS are whole numbers)" >&2
    exit 2
fi
[ $# -gt 0 ] && shift
all_targets=(alerts blocks url config bulk_jsonl bulk_csv journal emu_json emu_form emu_batch)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    [ -f "$here/fuzz_targets/$t.rs" ] || { echo "no target $t (targets: ${all_targets[*]})" >&2; exit 2; }
done

host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# Build scripts and proc macros stay uninstrumented because --target is explicit.
echo "building ${#targets[@]} target(s) for $host" >&2
start_build=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
(cd "$here" && cargo build --locked --release --target "$host" "${bins[@]}") || exit 2
echo "built in $(( $(date +%s) - start_build )) s" >&2
[ "$build_only" = 1 ] && exit 0

pids=()
stop_all() {
    for pid in "${pids[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null
    done
    sleep 1
    for pid in "${pids[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null
    done
}
trap 'stop_all; exit 130' INT TERM
trap 'stop_all' EXIT

run_one() {
    local t="$1" out="$here/out/$1"
    mkdir -p "$out/corpus" "$out/artifacts"
    touch "$out/.started"
    local mode=()
    [ "$keep" = 1 ] && mode=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    # Its own session, so that it and its fork-mode children can be stopped as a group; the
    # outer timeout is a backstop should libFuzzer not stop by itself.
    setsid timeout -k 10 $((seconds + 120)) "$here/target/$host/release/$t" \
        "$out/corpus" "$here/corpus/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/" "${mode[@]}" >"$out/log" 2>&1 &
    pids+=($!)
}

report() {
    local t="$1" out="$here/out/$1"
    local execs cov ft crashes hangs ooms
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -1)
    [ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' "$out/log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$out/log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -oE 'ft: [0-9]+' "$out/log" | tail -1 | cut -d' ' -f2)
    crashes=$(find "$out/artifacts" -newer "$out/.started" -name 'crash-*' | wc -l)
    hangs=$(find "$out/artifacts" -newer "$out/.started" \( -name 'timeout-*' -o -name 'slow-unit-*' \) | wc -l)
    ooms=$(find "$out/artifacts" -newer "$out/.started" -name 'oom-*' | wc -l)
    printf '%-11s execs %10s  cov %6s  ft %6s  corpus %5s  crashes %s  hangs %s  ooms %s\n' \
        "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$(ls "$out/corpus" | wc -l)" "$crashes" "$hangs" "$ooms"
    [ $((crashes + hangs + ooms)) -eq 0 ]
}

failed=0
queue=("${targets[@]}")
running=0
for t in "${queue[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    echo "fuzzing $t for ${seconds} s" >&2
    run_one "$t"
    running=$((running + 1))
done
wait
pids=()
echo
for t in "${targets[@]}"; do
    report "$t" || failed=1
done
if [ "$failed" = 1 ]; then
    echo "crash inputs are in $here/out/TARGET/artifacts/; the log of each run is $here/out/TARGET/log" >&2
fi
exit "$failed"
