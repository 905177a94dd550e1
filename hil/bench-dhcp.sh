#!/usr/bin/env bash
# DHCP benchmark: perfdhcp against edgemetal, Kea and dnsmasq in one run, in
# network namespaces on this machine; prints leases/s and the ratios.
# BENCH_RATE (default 5000) and BENCH_SECS (10) set the offered load;
# PROFILE=release (default) builds optimised binaries first.
set -euo pipefail
cd "$(dirname "$0")/.."
profile_flag=()
[[ "${PROFILE:-release}" == release ]] && profile_flag=(--release)
cargo build "${profile_flag[@]}" --workspace --all-targets
cargo test "${profile_flag[@]}" --test dhcp_bench -- --ignored --nocapture
