#!/usr/bin/env bash
# Builds the edgemetal ephemeral (commissioning) image from this machine's
# Debian packages:
#
#   OUT_DIR/vmlinuz    the newest /boot/vmlinuz-* (package linux-image-amd64)
#   OUT_DIR/initrd.gz  gzipped newc cpio: static busybox, the agent as /init,
#                      the udhcpc script and the NIC/disk modules with their
#                      dependencies, in load order
#   OUT_DIR/tools.squashfs  the hardware tests and LLDP (smartctl, memtester,
#                      fio, stress-ng, lldpd) with their libraries: large
#                      (fio links Ceph), so the agent fetches it from the rack
#                      only for a commissioning run that asks for them
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
    # The installer's filesystems (ext4 root, FAT ESP) and LVM.
    ext4 vfat nls_cp437 nls_ascii nls_utf8 crc32c_generic dm_mod
    # The tools image.
    loop squashfs
)

# The installer's and eraser's tools that busybox lacks or does not do
# fully (GPT, ext4, FAT32, zstd, GNU tar with xattrs, LVM), from Debian's
# packages with their libraries.
tools=(
    /usr/sbin/sfdisk /usr/sbin/wipefs /usr/sbin/blkid /usr/sbin/blkdiscard
    /usr/sbin/mke2fs /usr/sbin/mkfs.fat /usr/bin/zstd /usr/bin/tar /usr/sbin/lvm
)

# The hardware tests and LLDP, from Debian's packages, for the tools image.
test_tools=(
    /usr/sbin/smartctl /usr/sbin/memtester /usr/bin/fio /usr/bin/stress-ng
    /usr/sbin/lldpd /usr/sbin/lldpcli
)

# Every file of the image that comes from this directory.
inputs=(build.sh agent.sh deploy.sh erase.sh tests.sh udhcpc.script ../lib.sh)

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
        local tool
        for tool in "${tools[@]}" "${test_tools[@]}"; do
            if [[ -e $tool ]]; then
                printf '%s %s\n' "$tool" "$(stat -L -c %s "$tool")"
            else
                printf '%s none\n' "$tool"
            fi
        done
    } | sha256sum | cut -d' ' -f1
}

# Installs the Debian packages the build needs when they are missing.
ensure_packages() {
    local missing=()
    installed cpio || missing+=(cpio)
    # Not the `busybox` package: its /bin/busybox is dynamically linked.
    installed busybox-static || missing+=(busybox-static)
    [[ -n $(newest_kernel) ]] || missing+=(linux-image-amd64)
    installed fdisk || missing+=(fdisk)
    installed e2fsprogs || missing+=(e2fsprogs)
    installed dosfstools || missing+=(dosfstools)
    installed zstd || missing+=(zstd)
    installed lvm2 || missing+=(lvm2)
    local package
    for package in smartmontools memtester fio stress-ng lldpd squashfs-tools; do
        installed "$package" || missing+=("$package")
    done
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
install -D -m 0644 "$here/deploy.sh" "$root/lib/edgemetal/deploy.sh"
install -D -m 0644 "$here/erase.sh" "$root/lib/edgemetal/erase.sh"
install -D -m 0644 "$here/tests.sh" "$root/lib/edgemetal/tests.sh"
for tool in "${tools[@]}"; do
    copy_exec "$root" "$tool"
done
# GNU tar beside busybox's (which has no --xattrs), under its own name.
mv "$root/usr/bin/tar" "$root/usr/bin/gtar"
ln -s mke2fs "$root/usr/sbin/mkfs.ext4"
printf '[defaults]\n\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n\tdefault_mntopts = acl,user_xattr\n\tblocksize = 4096\n\tinode_size = 256\n\tinode_ratio = 16384\n[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize\n\t}\n' >"$root/etc/mke2fs.conf"
# LVM without udev (there is none here): no waiting for udev, no device list from it.
mkdir -p "$root/etc/lvm"
printf 'activation {\n\tudev_sync = 0\n\tudev_rules = 0\n}\ndevices {\n\tobtain_device_list_from_udev = 0\n\tuse_devicesfile = 0\n}\n' >"$root/etc/lvm/lvm.conf"
for name in pvcreate vgcreate lvcreate vgchange vgmknodes pvs vgs lvs; do
    ln -s lvm "$root/usr/sbin/$name"
done

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

# The tools image: run chrooted by the agent, with /dev, /proc, /sys bound
# and tmpfs on /tmp and /run; lldpd drops to its own user in /run/lldpd.
tools_root=$work/tools
mkdir -p "$tools_root"/{dev,proc,sys,tmp,run,etc}
for tool in "${test_tools[@]}"; do
    copy_exec "$tools_root" "$tool"
done
printf 'root:x:0:0:root:/root:/bin/sh\n_lldpd:x:101:101:lldpd:/run/lldpd:/bin/false\n' >"$tools_root/etc/passwd"
printf 'root:x:0:\n_lldpd:x:101:\n' >"$tools_root/etc/group"
fix_directory_modes "$tools_root"
find "$tools_root" -exec touch -h -d "@$epoch" {} +
mksquashfs "$tools_root" "$work/tools.squashfs" -quiet -no-progress -noappend -all-root \
    -comp zstd -mkfs-time "$epoch" -all-time "$epoch" >/dev/null

mkdir -p "$out"
cp "$kernel" "$work/vmlinuz"
touch -d "@$epoch" "$work/vmlinuz" "$work/initrd.gz" "$work/tools.squashfs"
chmod 0644 "$work/vmlinuz" "$work/initrd.gz" "$work/tools.squashfs"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/initrd.gz" "$out/initrd.gz"
mv -f "$work/tools.squashfs" "$out/tools.squashfs"
# Last: the stamp says the rest is complete.
stamp >"$work/stamp"
mv -f "$work/stamp" "$out/stamp"
echo "build.sh: $out: kernel $kver, ${#order[@]} modules (${order[*]})" >&2
