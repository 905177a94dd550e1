#!/usr/bin/env bash
# The commissioning bench: a region, a rack-edge in its own network
# namespace serving a bridge, and a QEMU machine (TCG, iPXE NIC ROM) whose
# power is an ipmi_sim BMC with a chassis control that really starts and
# stops it. The machine is registered with its BMC and commissioned through
# the API; the bench waits for Ready, checks the stored inventory against
# the VM, the seed's steps in the machine's events, the rack's logs and the
# power state, then lets an unknown machine enlist by network-booting.
# Prints the time from `commission` to Ready by phase.
#
# The same scenario runs in CI (tests/tests/commissioning.rs); this runs it
# alone with its output shown. Needs root (namespaces, taps); installs
# qemu-system-x86, ipxe-qemu, openipmi, ipmitool, busybox-static, cpio and
# linux-image-amd64 when missing. Every namespace, process and link it makes
# is removed however it ends. Logs: target/test-logs/commissioning/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets
status=0
cargo test -p edgemetal-tests --test commissioning -- --nocapture || status=$?
echo
echo "logs (rack, region, serial consoles, phases.txt): $(pwd)/target/test-logs/commissioning/"
exit $status
