#!/usr/bin/env bash
# Builds the deployable Debian 12 (bookworm) image from Debian's packages
# with mmdebstrap:
#
#   OUT_DIR/rootfs.tar.zst       the root filesystem as a zstd-compressed tar
#                                (MAAS's custom-image format): kernel and
#                                initramfs, GRUB for BIOS and UEFI (not
#                                installed to any disk: the installer runs
#                                grub-install from the image), cloud-init,
#                                OpenSSH, LVM
#   OUT_DIR/sha256               hex SHA-256 of rootfs.tar.zst
#   OUT_DIR/uncompressed_bytes   the size of the tar stream
#   OUT_DIR/manifest             every package and version in the image
#   OUT_DIR/stamp                hash of the inputs (`build.sh --stamp`)
#
# Reproducible for the same mirror content: SOURCE_DATE_EPOCH fixes every
# mtime, mmdebstrap drops machine-id, logs and caches, zstd runs with a
# fixed thread count. The mirror is Debian's (apt's configured one); the
# same `manifest` gives the same sha256.
#
# Usage: build.sh OUT_DIR | build.sh --stamp
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
epoch=${SOURCE_DATE_EPOCH:-1700000000}
mirror=${EDGEMETAL_OS_MIRROR:-http://deb.debian.org/debian}
security=${EDGEMETAL_OS_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# shellcheck source=../lib.sh
source "$here/../lib.sh"

packages=(
    systemd-sysv udev dbus linux-image-amd64 initramfs-tools
    grub2-common grub-pc-bin grub-efi-amd64-bin
    cloud-init openssh-server sudo ca-certificates
    lvm2 e2fsprogs dosfstools
    systemd-resolved iproute2 iputils-ping procps less
)

inputs=(build.sh customize.sh ../lib.sh)

stamp() {
    {
        stamp_files "${inputs[@]}"
        printf 'packages %s\n' "${packages[*]}"
        printf 'epoch %s mirror %s %s\n' "$epoch" "$mirror" "$security"
    } | sha256sum | cut -d' ' -f1
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

missing=()
installed mmdebstrap || missing+=(mmdebstrap)
installed zstd || missing+=(zstd)
install_packages "${missing[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
include=$(IFS=,; echo "${packages[*]}")
# Tar to stdout: mmdebstrap then needs no space for the tree as files.
SOURCE_DATE_EPOCH=$epoch mmdebstrap --quiet --mode=root --variant=minbase \
    --architectures=amd64 --include="$include" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="$here/customize.sh \"\$1\"" \
    --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" >"'"$work"'/manifest"' \
    bookworm - "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main" >"$work/rootfs.tar"
stat -c %s "$work/rootfs.tar" >"$work/uncompressed_bytes"
zstd -q -T2 -12 --rm "$work/rootfs.tar" -o "$work/rootfs.tar.zst"
sha256sum "$work/rootfs.tar.zst" | cut -d' ' -f1 >"$work/sha256"
LC_ALL=C sort -o "$work/manifest" "$work/manifest"

mkdir -p "$out"
for f in rootfs.tar.zst sha256 uncompressed_bytes manifest; do
    chmod 0644 "$work/$f"
    mv -f "$work/$f" "$out/$f"
done
# Last: the stamp says the rest is complete.
stamp >"$work/stamp"
mv -f "$work/stamp" "$out/stamp"
echo "build.sh: $out: $(wc -l <"$out/manifest") packages, $(stat -c %s "$out/rootfs.tar.zst") bytes compressed, $(cat "$out/uncompressed_bytes") unpacked, in $(($(date +%s) - started)) s" >&2
