#!/usr/bin/env bash
# Syslog relay benchmark: UDP syslog messages/s accepted with none lost, the
# rack's relay against rsyslog (imudp writing every line to a file), side by
# side in one run, in network namespaces on this machine (the rack runs for
# real: enrolled with a region, its queue on disk, forwarding to the region).
#
# A paced sender offers BENCH_RATES (messages/s, comma-separated, default
# 5000,10000,20000,40000,80000,160000) for BENCH_SECS (3) each to both
# servers in turn; a message counts once the server has it (the rack's
# edgemetal_rack_syslog_received_total, rsyslog's lines in its file).
# Prints the losses per rate, the highest rate each took with none lost,
# and the ratio. PROFILE=release (default) builds optimised binaries first.
# Not part of CI. As root, installs rsyslog if missing (run only as a
# foreground process of the test, with its own configuration).
set -euo pipefail
cd "$(dirname "$0")/.."
profile_flag=()
[[ "${PROFILE:-release}" == release ]] && profile_flag=(--release)
cargo build "${profile_flag[@]}" -p edgemetal-rack -p edgemetal-region
cargo test "${profile_flag[@]}" -p edgemetal-tests --test syslog \
    syslog_messages_per_second_against_rsyslog -- --ignored --nocapture
