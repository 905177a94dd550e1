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

# The modules the image loads (their dependencies come from modules.dep):
# the NICs and disks of QEMU machines, plus common server NICs and disks.
modules=(
    e1000 e1000e igb
    virtio_pci virtio_net virtio_blk virtio_scsi
    ahci sd_mod nvme
)

# Every file of the image that comes from this directory.
inputs=(build.sh agent.sh udhcpc.script)

newest_kernel() {
    local k
    k=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -type f -printf '%f\n' 2>/dev/null |
        LC_ALL=C sort -V | tail -n 1)
    [[ -n $k ]] && echo "/boot/$k"
    return 0
}

# Hash of everything the output depends on.
stamp() {
    local kernel f
    kernel=$(newest_kernel)
    {
        for f in "${inputs[@]}"; do
            printf '%s %s\n' "$f" "$(sha256sum <"$here/$f" | cut -d' ' -f1)"
        done
        if [[ -n $kernel ]]; then
            printf 'kernel %s %s\n' "${kernel##*/}" "$(stat -c %s "$kernel")"
        else
            echo 'kernel none'
        fi
        if [[ -e $busybox ]]; then
            printf 'busybox %s\n' "$(stat -L -c %s "$busybox")"
        else
            echo 'busybox none'
        fi
        printf 'epoch %s\n' "$epoch"
    } | sha256sum | cut -d' ' -f1
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Installs the Debian packages the build needs when they are missing.
ensure_packages() {
    local missing=()
    installed cpio || missing+=(cpio)
    # Not the `busybox` package: its /bin/busybox is dynamically linked.
    installed busybox-static || missing+=(busybox-static)
    [[ -n $(newest_kernel) ]] || missing+=(linux-image-amd64)
    ((${#missing[@]})) || return 0
    echo "build.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
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

# modules.dep: "path: dep dep ...", names normalised to underscores.
declare -A mod_path mod_deps builtin
modname() {
    local base=${1##*/}
    base=${base%%.ko*}
    REPLY=${base//-/_}
}
while IFS= read -r line; do
    path=${line%%:*}
    modname "$path"
    mod_path[$REPLY]=$path
    mod_deps[$REPLY]=${line#*:}
done <"$moddir/modules.dep"
if [[ -f $moddir/modules.builtin ]]; then
    while IFS= read -r path; do
        modname "$path"
        builtin[$REPLY]=1
    done <"$moddir/modules.builtin"
fi

# Dependencies first, each module once.
order=()
declare -A visited
visit() {
    local name=$1 dep
    [[ -n ${visited[$name]-} ]] && return 0
    visited[$name]=1
    if [[ -z ${mod_path[$name]-} ]]; then
        [[ -n ${builtin[$name]-} ]] && return 0
        echo "build.sh: module $name is neither in modules.dep nor built in ($kver)" >&2
        exit 1
    fi
    for dep in ${mod_deps[$name]}; do
        modname "$dep"
        visit "$REPLY"
    done
    order+=("$name")
}
for m in "${modules[@]}"; do
    visit "${m//-/_}"
done

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
    src=$moddir/${mod_path[$name]}
    file=${src##*/}
    dst=$root/lib/modules/$kver/${file%%.ko*}.ko
    case $src in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz) xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
    *) echo "build.sh: unknown module format $src" >&2; exit 1 ;;
    esac
    chmod 0644 "$dst"
    echo "$name ${dst##*/}" >>"$root/lib/modules/$kver/load-order"
done
chmod 0644 "$root/lib/modules/$kver/load-order"

# Reproducible archive: fixed modes and mtimes, sorted names, owner 0:0.
find "$root" -type d -exec chmod 0755 {} +
chmod 1777 "$root/tmp"
find "$root" -exec touch -h -d "@$epoch" {} +
(
    cd "$root"
    find . -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc --reproducible -R 0:0 --quiet
) | gzip -n -9 >"$work/initrd.gz"

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
