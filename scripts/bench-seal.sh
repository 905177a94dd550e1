#!/usr/bin/env bash
# Measures what end-to-end sealing costs per link message on this machine:
# plain envelope encode+decode against encode+seal+parse+open+decode, for a
# heartbeat (~100 B) and snapshots of ~16 KiB and ~1 MiB. Not part of CI.
#
#   scripts/bench-seal.sh [SECONDS_PER_CASE]    (default 2; SEAL_BENCH_SECS)
#
# Figures are only comparable on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

export SEAL_BENCH_SECS="${1:-${SEAL_BENCH_SECS:-2}}"
cargo build --release -p edgemetal-protocol --example seal_bench
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --release --quiet -p edgemetal-protocol --example seal_bench
