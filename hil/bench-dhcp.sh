#!/usr/bin/env bash
# DHCP benchmark: perfdhcp against edgemetal, Kea and dnsmasq in one run, in
# network namespaces on this machine; prints ACK/s at each offered rate, the
# ratio to Kea and edgemetal's peak RSS. BENCH_RATES ("2000 4000 8000 16000"),
# BENCH_SECS (15) and BENCH_CLIENTS (50000 MACs) set the load;
# PROFILE=release (default) builds optimised binaries first.
set -euo pipefail
cd "$(dirname "$0")/.."
profile_flag=()
[[ "${PROFILE:-release}" == release ]] && profile_flag=(--release)
# Only what the bench runs: release test binaries with LTO take long to link.
cargo build "${profile_flag[@]}" --workspace --bins --examples --test dhcp_bench
cargo test "${profile_flag[@]}" --test dhcp_bench -- --ignored --nocapture
