# edgemetal disk eraser, sourced by agent.sh when the purpose is `release`.
#
# Erases every fixed disk as $ERASE says (none, quick, full, secure, with
# $SECURE_FALLBACK for disks that cannot erase themselves), logging the
# method per disk to /results/erase.log and the rack ($PROGRESS_URL). A
# failure leaves /results/failed. RUN_NEXT is `off` either way.

LOG=/results/erase.log
: >"$LOG"
RUN_NEXT=off
echo release >/results/purpose

# zero DEV OFFSET_BYTES LENGTH_BYTES (MiB-aligned)
zero() {
    dd if=/dev/zero of="$1" bs=1048576 seek=$(($2 / 1048576)) count=$(($3 / 1048576)) conv=fsync 2>/dev/null
}

erase_quick() { # disk
    d=$1
    rd "/sys/block/$d/size"
    bytes=$((${_v:-0} * 512))
    # Partitions, last first: signatures, then their first and last MiB.
    for p in $(ls -r /sys/block/$d | grep "^$d"); do
        [ -e "/sys/block/$d/$p/partition" ] || continue
        wipefs -a -q "/dev/$p" >>"$LOG" 2>&1
        rd "/sys/block/$d/$p/start"
        start=$((${_v:-0} * 512))
        rd "/sys/block/$d/$p/size"
        size=$((${_v:-0} * 512))
        [ $size -ge 2097152 ] || continue
        zero "/dev/$d" $start 1048576
        zero "/dev/$d" $(((start + size) / 1048576 * 1048576 - 1048576)) 1048576
    done
    wipefs -a -q "/dev/$d" >>"$LOG" 2>&1
    # The protective MBR, the primary GPT and the backup at the end.
    zero "/dev/$d" 0 1048576 && zero "/dev/$d" $((bytes / 1048576 * 1048576 - 1048576)) 1048576 || return 1
    blockdev --rereadpt "/dev/$d" 2>/dev/null
    METHOD="wipefs and the first and last MiB of each partition and of the disk"
}

erase_full() { # disk
    if blkdiscard -z "/dev/$1" >>"$LOG" 2>&1; then
        METHOD="blkdiscard -z (zero-out)"
    else
        dd if=/dev/zero of="/dev/$1" bs=4194304 conv=fsync 2>>"$LOG"
        # dd ends with "No space left on device": the whole disk is written.
        METHOD="dd of zeros over the whole disk"
    fi
    blockdev --rereadpt "/dev/$1" 2>/dev/null
    return 0
}

erase_secure() { # disk
    if blkdiscard -s "/dev/$1" >>"$LOG" 2>&1; then
        METHOD="blkdiscard -s (secure discard)"
    elif blkdiscard "/dev/$1" >>"$LOG" 2>&1 && erase_quick "$1"; then
        METHOD="blkdiscard (discard), then the quick wipe"
    elif [ "${SECURE_FALLBACK:-full}" = full ]; then
        erase_full "$1"
        METHOD="$METHOD (no secure erase on this disk: fell back to full)"
    else
        return 1
    fi
}

erase_all() {
    command -v vgchange >/dev/null && vgchange -an >>"$LOG" 2>&1
    failed=
    for dir in /sys/block/*; do
        d=${dir##*/}
        case $d in loop* | ram* | zram* | sr* | fd* | dm-*) continue ;; esac
        rd "$dir/removable"
        [ "$_v" = 1 ] && continue
        progress erase start "$d ${ERASE:-none}"
        METHOD=
        case ${ERASE:-none} in
        none) METHOD="not erased"; ok=0 ;;
        quick) erase_quick "$d"; ok=$? ;;
        full) erase_full "$d"; ok=$? ;;
        secure) erase_secure "$d"; ok=$? ;;
        *) ok=1; METHOD="unknown erase mode ${ERASE}" ;;
        esac
        if [ $ok = 0 ]; then
            progress erase done "$d ${ERASE:-none}: $METHOD"
        else
            failed="$failed $d"
            echo "erase: $d: ${METHOD:-no secure erase and the fallback is fail}" >/results/failed
            progress erase failed "$d: ${METHOD:-no secure erase and the fallback is fail}"
        fi
    done
    sync
    [ -z "$failed" ]
}

erase_all
