#!/usr/bin/env bash
# Fuzzes the link decoders and the sealing layer (fuzz/, a cargo-fuzz project
# outside the main workspace). Not part of CI.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Runs every target for a bounded time, one after the other on one core,
# starting from the checked-in seeds (fuzz/seeds/<target>/) and the local,
# growing corpus (fuzz/corpus/<target>/, git-ignored). Prints one line per
# target: executions, executions per second, and crash artifacts written by
# this run (fuzz/artifacts/<target>/). Full logs: fuzz/target/fuzz-logs/.
# Exits non-zero if any target found a crash; keep crashing inputs under
# fuzz/regressions/<target>/ once understood. Regenerate the seeds with
#   cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
#
# Needs a nightly toolchain and cargo-fuzz (installed on first use).
# Environment: FUZZ_TARGETS="a b" to run a subset; FUZZ_ARGS for extra
# libFuzzer flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${1:-60}"
[[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2; }

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# -a: debug assertions on (integer overflow etc. count as crashes).
FUZZ_FLAGS=(-a)
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"

read -r -a TARGETS <<<"${FUZZ_TARGETS:-$(cargo +nightly fuzz list | tr '\n' ' ')}"
LOGS=target/fuzz-logs
mkdir -p "$LOGS"

summary=()
total_crashes=0
for target in "${TARGETS[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    seeds=()
    [[ -d "seeds/$target" ]] && seeds=("seeds/$target")
    stamp="$(mktemp)"
    log="$LOGS/$target.log"
    echo "== $target: ${SECONDS_PER_TARGET}s (log: fuzz/$log)"
    status=0
    # shellcheck disable=SC2086
    cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=10 \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?

    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    mapfile -t found < <(find "artifacts/$target" -type f -newer "$stamp" \
        \( -name 'crash-*' -o -name 'oom-*' -o -name 'leak-*' -o -name 'timeout-*' \))
    rm -f "$stamp"
    crashes="${#found[@]}"
    corpus="$(find "corpus/$target" -type f | wc -l)"
    if ((status != 0 && crashes == 0)); then
        echo "   fuzzer exited with status $status without an artifact; see fuzz/$log" >&2
        crashes="?"
    fi
    [[ "$crashes" == "0" ]] || total_crashes=$((total_crashes + 1))
    summary+=("$(printf '%-18s executions=%-10s exec/s=%-8s crash_artifacts=%-3s corpus=%s' \
        "$target" "${execs:-?}" "${rate:-?}" "$crashes" "$corpus")")
    if [[ "$crashes" != "0" ]]; then
        grep -m1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" >&2 || true
        printf '   artifact: fuzz/%s\n' "${found[@]}" >&2
    fi
done

echo
echo "fuzzed ${SECONDS_PER_TARGET}s per target:"
printf '%s\n' "${summary[@]}"
((total_crashes == 0))
