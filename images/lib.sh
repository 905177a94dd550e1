# Shell fragments both image builds share (images/ephemeral/build.sh and
# images/rack/build.sh): sourced, never run. Each build lists this file
# among its stamp inputs, so a change here rebuilds both images.
#
# The caller sets `set -euo pipefail`, `here` (its own directory) and
# `epoch` (SOURCE_DATE_EPOCH) before sourcing it.

# The newest /boot/vmlinuz-* (package linux-image-amd64), or nothing.
newest_kernel() {
    local k
    k=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -type f -printf '%f\n' 2>/dev/null |
        LC_ALL=C sort -V | tail -n 1)
    [[ -n $k ]] && echo "/boot/$k"
    return 0
}

# Stamp lines: each named file of the image's directory with its hash.
stamp_files() { # file... (relative to $here)
    local f
    for f in "$@"; do
        printf '%s %s\n' "$f" "$(sha256sum <"$here/$f" | cut -d' ' -f1)"
    done
}

# Stamp line: the kernel the image carries, by name and size.
stamp_kernel() {
    local kernel
    kernel=$(newest_kernel)
    if [[ -n $kernel ]]; then
        printf 'kernel %s %s\n' "${kernel##*/}" "$(stat -c %s "$kernel")"
    else
        echo 'kernel none'
    fi
}

installed() { # package
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Installs the named Debian packages (the ones a build found missing).
install_packages() { # package...
    (($#)) || return 0
    echo "build.sh: installing $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    fi
}

# ---- kernel modules: which files, in which order

declare -A mod_path=() mod_deps=() builtin=() visited=()
order=()
mod_kver=

# A module's name from its path, normalised to underscores, in REPLY.
modname() {
    local base=${1##*/}
    base=${base%%.ko*}
    REPLY=${base//-/_}
}

# Reads modules.dep ("path: dep dep ...") and modules.builtin of kernel
# `kver` in `moddir`, then puts the named modules and their dependencies
# into `order`: dependencies first, each module once, built-in ones left
# out. `mod_path` maps each name to its file under `moddir`.
resolve_modules() { # moddir kver module...
    local moddir=$1 line path m
    mod_kver=$2
    shift 2
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
    for m in "$@"; do
        visit_module "${m//-/_}"
    done
}

visit_module() { # name
    local name=$1 dep
    [[ -n ${visited[$name]-} ]] && return 0
    visited[$name]=1
    if [[ -z ${mod_path[$name]-} ]]; then
        [[ -n ${builtin[$name]-} ]] && return 0
        echo "build.sh: module $name is neither in modules.dep nor built in ($mod_kver)" >&2
        exit 1
    fi
    for dep in ${mod_deps[$name]}; do
        modname "$dep"
        visit_module "$REPLY"
    done
    order+=("$name")
}

# Copies module `name` (of `order`) from `moddir` into `dir` as an
# uncompressed .ko, mode 0644; its file name in REPLY.
install_module() { # moddir name dir
    local src=$1/${mod_path[$2]} file dst
    file=${src##*/}
    dst=$3/${file%%.ko*}.ko
    case $src in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz) xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
    *) echo "build.sh: unknown module format $src" >&2; exit 1 ;;
    esac
    chmod 0644 "$dst"
    REPLY=${dst##*/}
}

# ---- the initramfs

# Fixed directory modes: 0755, and 1777 for /tmp.
fix_directory_modes() { # root
    find "$1" -type d -exec chmod 0755 {} +
    chmod 1777 "$1/tmp"
}

# A reproducible gzipped newc archive of `root`: every mtime at `epoch`,
# sorted names, owner 0:0, no gzip name or time.
make_initrd() { # root out
    find "$1" -exec touch -h -d "@$epoch" {} +
    (
        cd "$1"
        find . -print0 | LC_ALL=C sort -z |
            cpio --null -o -H newc --reproducible -R 0:0 --quiet
    ) | gzip -n -9 >"$2"
}

# ---- dynamically linked tools

# Copies `binary` into `root` at the same path, with every shared library
# ldd names and the dynamic loader (as initramfs-tools' copy_exec does).
copy_exec() { # root binary
    local root=$1 binary lib
    binary=$(readlink -f "$2")
    install -D -m 0755 "$binary" "$root$2"
    while read -r lib; do
        [[ -n $lib && ! -e $root$lib ]] || continue
        install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done < <(ldd "$binary" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p')
}
