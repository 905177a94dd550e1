#!/usr/bin/env bash
# Builds the edgemetal ephemeral (commissioning) image from this machine's
# Debian packages:
#
#   OUT_DIR/vmlinuz    the newest /boot/vmlinuz-* (package linux-image-amd64)
#   OUT_DIR/initrd.gz  gzipped newc cpio: static busybox, the agent as /init,
#                      the udhcpc script and the NIC/disk modules with their
#                      dependencies, in load order
#   OUT_DIR/stamp      hash of the inputs; `build.sh --stamp` prints the same
#                      hash without building, so callers can tell stale output
#
# The output is reproducible: two builds from the same inputs give
# byte-identical files (fixed mtimes, sorted cpio, owner 0:0, gzip -n).
#
# Usage: build.sh OUT_DIR | build.sh --stamp
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
busybox=/bin/busybox
epoch=${SOURCE_DATE_EPOCH:-0}
# shellcheck source=../lib.sh
source "$here/../lib.sh"

# The modules the image loads (their dependencies come from modules.dep):
# the NICs and disks of QEMU machines, plus common server NICs and disks.
modules=(
    e1000 e1000e igb
    virtio_pci virtio_net virtio_blk virtio_scsi
    ahci sd_mod nvme
)

# Every file of the image that comes from this directory.
inputs=(build.sh agent.sh udhcpc.script ../lib.sh)

# Hash of everything the output depends on.
stamp() {
    {
        stamp_files "${inputs[@]}"
        stamp_kernel
        if [[ -e $busybox ]]; then
            printf 'busybox %s\n' "$(stat -L -c %s "$busybox")"
        else
            echo 'busybox none'
        fi
        printf 'epoch %s\n' "$epoch"
    } | sha256sum | cut -d' ' -f1
}

# Installs the Debian packages the build needs when they are missing.
ensure_packages() {
    local missing=()
    installed cpio || missing+=(cpio)
    # Not the `busybox` package: its /bin/busybox is dynamically linked.
    installed busybox-static || missing+=(busybox-static)
    [[ -n $(newest_kernel) ]] || missing+=(linux-image-amd64)
    install_packages "${missing[@]}"
}

if [[ ${1-} == --stamp ]]; then
    stamp
    exit 0
fi
if [[ $# -ne 1 || $1 == -* ]]; then
    echo "usage: $0 OUT_DIR | $0 --stamp" >&2
    exit 2
fi
out=$1

ensure_packages
kernel=$(newest_kernel)
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[[ -f $moddir/modules.dep ]] || { echo "build.sh: no $moddir/modules.dep" >&2; exit 1; }

resolve_modules "$moddir" "$kver" "${modules[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,results,etc/udhcpc} \
    "$root/lib/modules/$kver"

install -m 0755 "$busybox" "$root/bin/busybox"
install -m 0755 "$here/agent.sh" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc/default.script"

# Uncompressed .ko files next to each other, and the load order as
# "name file" lines.
: >"$root/lib/modules/$kver/load-order"
for name in "${order[@]}"; do
    install_module "$moddir" "$name" "$root/lib/modules/$kver"
    echo "$name $REPLY" >>"$root/lib/modules/$kver/load-order"
done
chmod 0644 "$root/lib/modules/$kver/load-order"

# Reproducible archive: fixed modes and mtimes, sorted names, owner 0:0.
fix_directory_modes "$root"
make_initrd "$root" "$work/initrd.gz"

mkdir -p "$out"
cp "$kernel" "$work/vmlinuz"
touch -d "@$epoch" "$work/vmlinuz" "$work/initrd.gz"
chmod 0644 "$work/vmlinuz" "$work/initrd.gz"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/initrd.gz" "$out/initrd.gz"
# Last: the stamp says the rest is complete.
stamp >"$work/stamp"
mv -f "$work/stamp" "$out/stamp"
echo "build.sh: $out: kernel $kver, ${#order[@]} modules (${order[*]})" >&2
