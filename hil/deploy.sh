#!/usr/bin/env bash
# The deploy bench: the same scenarios as tests/tests/deploy.rs (a BIOS and
# a UEFI QEMU machine behind ipmi_sim, commissioned, deployed with Debian 12,
# logged into over ssh, released with quick erase), run with their output
# shown, then the deploy's time by phase (phases.txt of each run) and the
# image write against a local `zstd -dc | tar -x` of the same image into a
# fresh ext4 filesystem on this machine.
#
# EDGEMETAL_QEMU_ACCEL=kvm runs the machines under KVM (where /dev/kvm
# works): only then is the in-machine write comparable with the local one;
# under TCG (the default, as in CI) the emulated CPU bounds it.
#
# Needs root. Logs: target/test-logs/deploy-{bios,uefi}/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets
status=0
cargo test -p edgemetal-tests --test deploy -- --nocapture --test-threads=1 || status=$?
echo
for run in bios uefi; do
    [[ -f target/test-logs/deploy-$run/phases.txt ]] && cat "target/test-logs/deploy-$run/phases.txt"
done

# The local reference: the same image unpacked the same way on this host.
image=target/os/rootfs.tar.zst
if [[ -f $image ]]; then
    work=$(mktemp -d)
    trap 'umount "$work/mnt" 2>/dev/null; rm -rf "$work"' EXIT
    truncate -s 4G "$work/disk.img"
    mkfs.ext4 -q -F "$work/disk.img"
    mkdir "$work/mnt"
    mount -o loop "$work/disk.img" "$work/mnt"
    bytes=$(stat -c %s "$image")
    start=$(date +%s.%N)
    zstd -q -dc "$image" | tar -x --xattrs --xattrs-include='*' --numeric-owner -C "$work/mnt"
    sync
    end=$(date +%s.%N)
    awk -v b="$bytes" -v s="$start" -v e="$end" \
        'BEGIN { printf "local zstd -dc | tar -x of the image (%d bytes): %.1f s, %.1f MB/s compressed\n", b, e - s, b / (e - s) / 1e6 }'
    for run in bios uefi; do
        line=$(grep "image write" "target/test-logs/deploy-$run/phases.txt" 2>/dev/null || true)
        [[ -n $line ]] || continue
        took=$(sed -n 's/.* bytes in \([0-9.]*\) s.*/\1/p' <<<"$line")
        [[ -n $took ]] && awk -v t="$took" 'BEGIN { exit !(t > 0) }' || continue
        awk -v b="$bytes" -v t="$took" -v s="$start" -v e="$end" -v r="$run" \
            'BEGIN { printf "%s machine image write: %.1f MB/s compressed, %.2f of the local write\n", r, b / t / 1e6, (e - s) / t }'
    done
fi
echo "logs: $(pwd)/target/test-logs/deploy-{bios,uefi}/"
exit $status
