#!/usr/bin/env bash
# Builds the edgemetal rack appliance image from this machine's Debian
# packages and an edgemetal-rack binary:
#
#   OUT_DIR/rack.img     raw disk image for `dd` (MBR, syslinux): system A,
#                        system B (empty, for A/B updates), config, state
#   OUT_DIR/vmlinuz      the kernel (newest /boot/vmlinuz-*, linux-image-amd64)
#   OUT_DIR/initrd.gz    the initramfs: static busybox, rack-init.sh as /init,
#                        edgemetal-rack, the iPXE binaries it serves, the NIC,
#                        disk and file system modules
#   OUT_DIR/syslinux.cfg the kernel command line the disk boots with (for
#                        network or direct boot of vmlinuz + initrd.gz)
#   OUT_DIR/stamp        hash of the inputs; `build.sh --stamp [RACK_BINARY]`
#                        prints the same hash without building
#
# RACK_BINARY defaults to a static release build
# (target/x86_64-unknown-linux-gnu/release/edgemetal-rack), which this
# script builds with cargo when it is missing. A dynamically linked binary
# works too: the libraries `ldd` names are copied next to it.
#
# Nothing needs root at build time but installing missing packages: the
# partitions are built as files (mkfs.fat + mtools, mkfs.ext4 -d), placed
# with sfdisk and dd. The output is reproducible: two builds from the same
# inputs give byte-identical files.
#
# Usage: build.sh OUT_DIR [RACK_BINARY] | build.sh --stamp [RACK_BINARY]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
workspace=$(cd "$here/../.." && pwd)
busybox=/bin/busybox
epoch=${SOURCE_DATE_EPOCH:-0}
default_binary=$workspace/target/x86_64-unknown-linux-gnu/release/edgemetal-rack
# shellcheck source=../lib.sh
source "$here/../lib.sh"

# Disk layout in MiB. Four primary MBR partitions: the two system slots
# let a later update write the idle slot and flip the active flag, without
# reflashing; the state partition is last so that it can grow into the rest
# of a larger disk.
lead_mib=1
system_mib=24
config_mib=4
state_mib=8

# The modules the image carries (their dependencies come from modules.dep):
# common NICs of small servers and NUCs, the disks they boot from (SATA,
# NVMe, USB sticks, SD/eMMC, virtio), the file systems of the partitions,
# and the ACPI power button. At boot, init loads the drivers whose aliases
# match the devices present (modules.alias, made by busybox depmod), plus
# the `always` ones, which no device asks for.
modules=(
    virtio_pci virtio_net virtio_blk virtio_scsi
    e1000 e1000e igb igc ixgbe r8169 tg3 bnx2 r8152
    ahci ata_piix sd_mod nvme
    xhci_pci ehci_pci usb_storage uas mmc_block sdhci_pci
    crc32c_generic crc32c_intel ext4 vfat nls_cp437 nls_ascii
    button evdev
)
always=(crc32c_generic crc32c_intel ext4 vfat nls_cp437 nls_ascii sd_mod evdev)

# The iPXE binaries the rack hands out (rack-edge/src/dhcp/boot.rs);
# missing ones are skipped (ipxe-arm64.efi is not in Debian's amd64 ipxe).
ipxe_files=(undionly.kpxe snponly.efi ipxe-arm64.efi)

# Every file of the image that comes from this directory.
inputs=(build.sh rack-init.sh udhcpc.script inittab ../lib.sh)

package_version() {
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none
}

# Hash of everything the output depends on.
stamp() {
    local binary=$1 f
    {
        stamp_files "${inputs[@]}"
        stamp_kernel
        if [[ -f $binary ]]; then
            printf 'rack %s\n' "$(sha256sum <"$binary" | cut -d' ' -f1)"
        else
            echo 'rack none'
        fi
        for f in busybox-static ipxe syslinux syslinux-common mtools dosfstools e2fsprogs fdisk; do
            printf '%s %s\n' "$f" "$(package_version "$f")"
        done
        printf 'epoch %s\n' "$epoch"
    } | sha256sum | cut -d' ' -f1
}

# Installs the Debian packages the build needs when they are missing.
ensure_packages() {
    local missing=() p
    # Not the `busybox` package: its /bin/busybox is dynamically linked.
    for p in cpio busybox-static ipxe syslinux syslinux-common mtools dosfstools e2fsprogs fdisk binutils; do
        installed "$p" || missing+=("$p")
    done
    [[ -n $(newest_kernel) ]] || missing+=(linux-image-amd64)
    install_packages "${missing[@]}"
}

if [[ ${1-} == --stamp ]]; then
    stamp "${2:-$default_binary}"
    exit 0
fi
if [[ $# -lt 1 || $# -gt 2 || $1 == -* ]]; then
    echo "usage: $0 OUT_DIR [RACK_BINARY] | $0 --stamp [RACK_BINARY]" >&2
    exit 2
fi
out=$1
binary=${2:-$default_binary}

ensure_packages
if [[ $# -eq 1 && ! -f $binary ]]; then
    echo "build.sh: building a static edgemetal-rack" >&2
    # A glibc static binary needs no libraries in the image. --target keeps
    # the flag off build scripts and proc macros.
    (cd "$workspace" &&
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
            cargo build --release --locked --target x86_64-unknown-linux-gnu -p edgemetal-rack)
fi
[[ -f $binary ]] || { echo "build.sh: no rack binary at $binary" >&2; exit 1; }

kernel=$(newest_kernel)
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[[ -f $moddir/modules.dep ]] || { echo "build.sh: no $moddir/modules.dep" >&2; exit 1; }

resolve_modules "$moddir" "$kver" "${modules[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/lib/ipxe,dev,proc,sys,tmp,run,root,var/lib} \
    "$root"/etc/{udhcpc,acpi/PWRF} "$root/lib/modules/$kver"

# busybox and a link per applet, so that scripts and inittab find them on PATH.
install -m 0755 "$busybox" "$root/bin/busybox"
while IFS= read -r applet; do
    [[ $applet == */init || $applet == init || -e $root/$applet ]] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full | LC_ALL=C sort)
ln -s /bin/busybox "$root/sbin/init"

install -m 0755 "$here/rack-init.sh" "$root/init"
install -m 0644 "$here/inittab" "$root/etc/inittab"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc/default.script"
printf '#!/bin/sh\n# ACPI power button: a clean power-off (busybox acpid).\nexec /sbin/poweroff\n' \
    >"$root/etc/acpi/PWRF/00000080"
chmod 0755 "$root/etc/acpi/PWRF/00000080"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
ln -s /run/edgemetal/resolv.conf "$root/etc/resolv.conf"

# The rack, stripped (the image carries no debugger), and its libraries
# when it is not static.
strip -o "$root/usr/bin/edgemetal-rack" "$binary"
chmod 0755 "$root/usr/bin/edgemetal-rack"
linkage=static
# A dynamic binary names its loader (PT_INTERP); ldd also "succeeds" on a static-pie one.
if readelf -l "$binary" | grep -q 'program interpreter'; then
    linkage=dynamic
    while read -r lib; do
        mkdir -p "$root/$(dirname "$lib")"
        cp -L "$lib" "$root/$lib"
        chmod 0755 "$root/$lib"
    done < <(ldd "$binary" | grep -oE '/[^ ]+' | LC_ALL=C sort -u)
fi
rack_version=$("$root/usr/bin/edgemetal-rack" --version 2>/dev/null || echo "edgemetal-rack ?")
printf 'edgemetal rack image: %s (%s), kernel %s, rack sha256 %.12s\n' \
    "$rack_version" "$linkage" "$kver" "$(sha256sum <"$binary")" >"$root/etc/edgemetal-release"

for f in "${ipxe_files[@]}"; do
    [[ -f /usr/lib/ipxe/$f ]] && install -m 0644 "/usr/lib/ipxe/$f" "$root/usr/lib/ipxe/$f"
done

# Uncompressed .ko files next to each other, indexed by busybox depmod
# (modules.dep, modules.alias) for busybox modprobe.
for name in "${order[@]}"; do
    install_module "$moddir" "$name" "$root/lib/modules/$kver"
done
"$busybox" depmod -b "$root" "$kver"
# depmod lists modules in directory order: sorted, the files are reproducible.
for f in "$root/lib/modules/$kver"/modules.*; do
    LC_ALL=C sort -o "$f" "$f"
done
printf '%s\n' "${always[@]}" >"$root/lib/modules/$kver/always"
chmod 0644 "$root/lib/modules/$kver"/{modules.*,always} "$root"/etc/{passwd,group,hosts,nsswitch.conf,edgemetal-release}

# Reproducible archive: fixed modes and mtimes, sorted names, owner 0:0.
fix_directory_modes "$root"
chmod 0700 "$root/root"
make_initrd "$root" "$work/initrd.gz"
cp "$kernel" "$work/vmlinuz"

# The kernel command line: serial and screen consoles (the last one is
# /dev/console); loglevel=5 keeps the kernel's info chatter off the consoles
# but not our lines; printk.devkmsg=on lets every line of the rack's log
# into the kernel log; panic=10 reboots after a fatal error.
cmdline="console=ttyS0,115200n8 console=tty0 loglevel=5 printk.devkmsg=on panic=10"
cat >"$work/syslinux.cfg" <<EOF
# edgemetal rack image: boot the system in this partition at once.
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT edgemetal
LABEL edgemetal
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND $cmdline
EOF

# ---- partitions, each built as a file
mib=$((1024 * 1024))
sectors_per_mib=$((mib / 512))
a_start=$((lead_mib * sectors_per_mib))
b_start=$((a_start + system_mib * sectors_per_mib))
config_start=$((b_start + system_mib * sectors_per_mib))
state_start=$((config_start + config_mib * sectors_per_mib))
total_mib=$((lead_mib + 2 * system_mib + config_mib + state_mib))

# FAT cannot store times before 1980; e2fsprogs ignores a fake time of 0.
fat_epoch=$((epoch < 315532800 ? 315532800 : epoch))
export SOURCE_DATE_EPOCH=$epoch E2FSPROGS_FAKE_TIME=$fat_epoch MTOOLS_SKIP_CHECK=1 TZ=UTC
# FAT file systems: fixed volume ids, the partition offset as hidden sectors
# (the syslinux boot sector reads ldlinux.sys relative to it).
make_fat() { # file MiB label volume-id hidden-sectors
    rm -f "$1"
    mkfs.fat -C --invariant -n "$3" -i "$4" -h "$5" "$1" $(($2 * 1024)) >/dev/null
}
fat_copy() { # fat-file source... (to the root, modification times kept)
    local fat=$1
    shift
    mcopy -o -m -i "$fat" "$@" ::/
}

make_fat "$work/system-a.img" "$system_mib" EMSYS_A ed6e0001 "$a_start"
touch -d "@$fat_epoch" "$work/vmlinuz" "$work/initrd.gz" "$work/syslinux.cfg"
fat_copy "$work/system-a.img" "$work/vmlinuz" "$work/initrd.gz" "$work/syslinux.cfg"
syslinux --install "$work/system-a.img"
need=$(($(stat -c %s "$work/vmlinuz") + $(stat -c %s "$work/initrd.gz")))
if ((need > (system_mib - 1) * mib)); then
    echo "build.sh: kernel + initrd ($need bytes) do not fit a $system_mib MiB system partition" >&2
    exit 1
fi
# Slot B: an empty file system until an update writes it.
make_fat "$work/system-b.img" "$system_mib" EMSYS_B ed6e0002 "$b_start"

make_fat "$work/config.img" "$config_mib" EMCONFIG ed6e0003 "$config_start"
cat >"$work/README.txt" <<'EOF'
edgemetal rack configuration partition.

site.conf is written by `edgemetal-rack image configure IMAGE ...` before the
image is flashed; the rack reads it at every boot. Keys (one key=value a line):
region_url, enrolment_token, broker_url, insecure_plaintext, region_ca_file,
wan_interface, wan_address (dhcp or ADDRESS/PREFIX), wan_gateway, dns_server,
dhcp_interface, site_address (INTERFACE=ADDRESS/PREFIX), hostname,
ntp_server, status_listen. Interfaces are kernel names (eth0) or MAC
addresses. The enrolment token is used once, at the first boot.
EOF
touch -d "@$fat_epoch" "$work/README.txt"
fat_copy "$work/config.img" "$work/README.txt"

# The state file system: fixed UUID and hash seed, times from E2FSPROGS_FAKE_TIME.
mkdir -p "$work/state-root"
touch -d "@$fat_epoch" "$work/state-root"
mkfs.ext4 -q -F -L EMSTATE -T small -U 8b1c0f0e-6d65-4d65-8e5f-737461746501 \
    -E hash_seed=8b1c0f0e-6d65-4d65-8e5f-737461746502,root_owner=0:0,nodiscard \
    -d "$work/state-root" "$work/state.img" "${state_mib}M" >/dev/null

# ---- the disk: MBR with fixed disk id, syslinux's MBR boot code, slot A active
truncate -s $((total_mib * mib)) "$work/rack.img"
sfdisk --quiet --no-reread --no-tell-kernel "$work/rack.img" <<EOF
label: dos
label-id: 0xed6e0000
unit: sectors

start=$a_start, size=$((system_mib * sectors_per_mib)), type=e, bootable
start=$b_start, size=$((system_mib * sectors_per_mib)), type=e
start=$config_start, size=$((config_mib * sectors_per_mib)), type=e
start=$state_start, size=$((state_mib * sectors_per_mib)), type=83
EOF
place() { # partition-file start-sector
    dd if="$1" of="$work/rack.img" bs=512 seek="$2" conv=notrunc,sparse status=none
}
place "$work/system-a.img" "$a_start"
place "$work/system-b.img" "$b_start"
place "$work/config.img" "$config_start"
place "$work/state.img" "$state_start"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$work/rack.img" bs=440 count=1 conv=notrunc status=none

mkdir -p "$out"
for f in rack.img vmlinuz initrd.gz syslinux.cfg; do
    touch -d "@$epoch" "$work/$f"
    chmod 0644 "$work/$f"
    mv -f "$work/$f" "$out/$f"
done
# Last: the stamp says the rest is complete.
stamp "$binary" >"$work/stamp"
mv -f "$work/stamp" "$out/stamp"
echo "build.sh: $out/rack.img: $total_mib MiB, kernel $kver, initrd $(stat -c %s "$out/initrd.gz") bytes," \
    "rack $linkage, ${#order[@]} modules" >&2
