# edgemetal installer, sourced by agent.sh when the purpose is `deploy`.
#
# Reads the plan from the rack ($DEPLOY_URL), then: finds the disk, lays out
# GPT with a BIOS boot partition and an ESP (so the disk boots under both
# firmwares) and a root on ext4 (or LVM), streams the image from the rack
# into it checking its sha256 on the way, installs GRUB for BIOS and UEFI
# from the image itself, and writes the network and the cloud-init seed.
# Every step is reported to the rack ($PROGRESS_URL). On success RUN_NEXT is
# `reboot`; a failure leaves /results/failed ("step: why") and RUN_NEXT
# `off`. The agent then posts /results and acts on RUN_NEXT.

LOG=/results/deploy.log
: >"$LOG"
T=/target


# run_failed STEP WHY: record, report, stop the run.
run_failed() {
    echo "$1: $2" >/results/failed
    progress "$1" failed "$2"
    RUN_NEXT=off
    return 1
}

# Runs a command, its output to the log; false if it failed.
logged() {
    "$@" >>"$LOG" 2>&1
}

deploy_plan() {
    wget -q -O /tmp/plan --header "Authorization: Bearer $TOKEN" "$DEPLOY_URL" 2>/tmp/plan.err ||
        { run_failed plan "cannot read $DEPLOY_URL: $(tail -n 1 /tmp/plan.err)"; return 1; }
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$(printf '\r')}
        case $line in *=*) ;; *) continue ;; esac
        val=${line#*=}
        case ${line%%=*} in
        image_url) P_IMAGE_URL=$val ;;
        image_sha256) P_SHA256=$val ;;
        image_bytes) P_BYTES=$val ;;
        uncompressed_bytes) P_UNPACKED=$val ;;
        format) P_FORMAT=$val ;;
        layout) P_LAYOUT=$val ;;
        disk_serial) P_SERIAL=$val ;;
        mac) P_MAC=$val ;;
        address) P_ADDRESS=$val ;;
        gateway) P_GATEWAY=$val ;;
        dns) P_DNS=$val ;;
        search) P_SEARCH=$val ;;
        hostname) P_HOSTNAME=$val ;;
        seed_url) P_SEED=$val ;;
        esac
    done </tmp/plan
    [ -n "${P_IMAGE_URL:-}" ] && [ -n "${P_SHA256:-}" ] && [ -n "${P_SEED:-}" ] ||
        { run_failed plan "the plan lacks image_url, image_sha256 or seed_url"; return 1; }
    [ "${P_FORMAT:-}" = tar.zst ] || { run_failed image "unsupported format ${P_FORMAT:-none}"; return 1; }
    echo "plan: image ${P_SHA256} (${P_BYTES:-?} bytes, ${P_UNPACKED:-?} unpacked), layout ${P_LAYOUT:-flat}, disk ${P_SERIAL:-boot disk}, address ${P_ADDRESS:-dhcp}" >>"$LOG"
}

# The disk's serial as the inventory reads it.
disk_serial() {
    rd "$1/serial"
    [ -n "$_v" ] || rd "$1/device/serial"
    if [ -z "$_v" ] && [ -r "$1/device/vpd_pg80" ]; then
        _v=$(tail -c +5 "$1/device/vpd_pg80" | tr -d '\000\t\r\n' | sed -e 's/^ *//' -e 's/ *$//')
    fi
}

step_disk() {
    progress disk start "${P_SERIAL:-boot disk}"
    DISK=
    for d in /sys/block/*; do
        n=${d##*/}
        case $n in loop* | ram* | zram* | sr* | fd* | dm-*) continue ;; esac
        rd "$d/removable"
        [ "$_v" = 1 ] && continue
        if [ -n "${P_SERIAL:-}" ]; then
            disk_serial "$d"
            [ "$_v" = "$P_SERIAL" ] && { DISK=$n; break; }
        elif [ -z "$DISK" ]; then
            DISK=$n
        fi
    done
    [ -n "$DISK" ] || { run_failed disk "no disk with serial ${P_SERIAL:-any}"; return 1; }
    rd "/sys/block/$DISK/size"
    have=$((${_v:-0} * 512))
    need=$((${P_UNPACKED:-0} + ${P_UNPACKED:-0} / 10 + 130 * 1048576))
    [ "$have" -ge "$need" ] || { run_failed disk "$DISK has $have bytes, the image needs $need"; return 1; }
    progress disk done "$DISK ($have bytes)"
}

# The device of partition N of $DISK (vda1, nvme0n1p1), once it exists.
part() {
    case $DISK in *[0-9]) _p=/dev/${DISK}p$1 ;; *) _p=/dev/$DISK$1 ;; esac
    i=0
    while [ ! -b "$_p" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    echo "$_p"
}

step_partitioning() {
    progress partitioning start "GPT: bios, esp, root (${P_LAYOUT:-flat})"
    command -v vgchange >/dev/null && vgchange -an >>"$LOG" 2>&1
    for p in /sys/block/$DISK/$DISK*; do
        [ -e "$p/partition" ] && wipefs -a -q "/dev/${p##*/}" >>"$LOG" 2>&1
    done
    logged wipefs -a -q "/dev/$DISK" || { run_failed partitioning "wipefs /dev/$DISK failed"; return 1; }
    case ${P_LAYOUT:-flat} in
    lvm) roottype=E6D6D379-F507-44C2-A23C-238F2A3DF928 ;;
    *) roottype=L ;;
    esac
    printf 'label: gpt\nsize=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios\nsize=128MiB, type=U, name=esp\ntype=%s, name=root\n' "$roottype" |
        sfdisk -q -W always -w always "/dev/$DISK" >>"$LOG" 2>&1 ||
        { run_failed partitioning "sfdisk /dev/$DISK failed: $(tail -n 1 "$LOG")"; return 1; }
    ESP=$(part 2)
    ROOTPART=$(part 3)
    logged mkfs.fat -F 32 -n ESP "$ESP" || { run_failed partitioning "mkfs.fat $ESP failed"; return 1; }
    if [ "${P_LAYOUT:-flat}" = lvm ]; then
        { logged pvcreate -ff -y "$ROOTPART" && logged vgcreate vg0 "$ROOTPART" &&
            logged lvcreate -y -Wn -Zy -l 100%FREE -n root vg0 && logged vgmknodes; } ||
            { run_failed partitioning "LVM on $ROOTPART failed: $(tail -n 1 "$LOG")"; return 1; }
        ROOTDEV=/dev/vg0/root
        [ -b $ROOTDEV ] || ROOTDEV=/dev/mapper/vg0-root
    else
        ROOTDEV=$ROOTPART
    fi
    logged mkfs.ext4 -q -F -L root "$ROOTDEV" || { run_failed partitioning "mkfs.ext4 $ROOTDEV failed"; return 1; }
    progress partitioning done "$DISK: esp $ESP, root $ROOTDEV"
}

step_image() {
    progress image start "$P_IMAGE_URL"
    mkdir -p $T
    mount -t ext4 "$ROOTDEV" $T || { run_failed image "cannot mount $ROOTDEV"; return 1; }
    mkdir -p $T/boot/efi
    mount -t vfat "$ESP" $T/boot/efi || { run_failed image "cannot mount the ESP $ESP"; return 1; }
    rm -f /tmp/image.fifo /tmp/image.sum
    mkfifo /tmp/image.fifo
    sha256sum </tmp/image.fifo >/tmp/image.sum &
    sumpid=$!
    started=$(uptime_cs)
    set -o pipefail
    wget -q -O - "$P_IMAGE_URL" 2>/tmp/image.err | tee /tmp/image.fifo |
        zstd -q -dc | gtar -x --xattrs --xattrs-include='*' --numeric-owner -C $T 2>>"$LOG"
    written=$?
    set +o pipefail
    wait $sumpid
    read -r sum _ </tmp/image.sum
    took=$(($(uptime_cs) - started))
    took=$((took / 100)).$((took % 100 / 10))$((took % 10))
    [ $written = 0 ] || { run_failed image "download or unpack failed: $(tail -n 1 /tmp/image.err) $(tail -n 1 "$LOG")"; return 1; }
    if [ "$sum" != "$P_SHA256" ]; then
        umount $T/boot/efi $T 2>/dev/null
        wipefs -a -q "/dev/$DISK" 2>/dev/null
        run_failed image "sha256 mismatch: got $sum, want $P_SHA256"
        return 1
    fi
    progress image done "${P_BYTES:-?} bytes in $took s, sha256 verified"
}

step_fstab() {
    root_uuid=$(blkid -s UUID -o value "$ROOTDEV")
    esp_uuid=$(blkid -s UUID -o value "$ESP")
    if [ "${P_LAYOUT:-flat}" = lvm ]; then root_spec=/dev/mapper/vg0-root; else root_spec=UUID=$root_uuid; fi
    printf '%s / ext4 errors=remount-ro 0 1\nUUID=%s /boot/efi vfat umask=0077 0 1\n' "$root_spec" "$esp_uuid" >$T/etc/fstab
    cp $T/etc/fstab /results/fstab
}

step_bootloader() {
    progress bootloader start "GRUB for BIOS and UEFI"
    for fs in dev proc sys; do mount --bind /$fs $T/$fs; done
    [ -x $T/usr/sbin/grub-install ] || { run_failed bootloader "the image has no grub-install"; return 1; }
    logged chroot $T grub-install --target=i386-pc "/dev/$DISK" ||
        { run_failed bootloader "grub-install (BIOS) failed: $(tail -n 1 "$LOG")"; return 1; }
    logged chroot $T grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram ||
        { run_failed bootloader "grub-install (UEFI) failed: $(tail -n 1 "$LOG")"; return 1; }
    if [ "${P_LAYOUT:-flat}" = lvm ] && ! chroot $T sh -c 'lsinitramfs /boot/initrd.img-* | grep -q sbin/lvm'; then
        logged chroot $T update-initramfs -u || { run_failed bootloader "update-initramfs failed"; return 1; }
    fi
    # grub-mkconfig names the root by UUID only if /dev/disk/by-uuid has it,
    # and no udev made those links here.
    mkdir -p /dev/disk/by-uuid
    for dev in "$ROOTDEV" "$ESP"; do
        uuid=$(blkid -s UUID -o value "$dev")
        [ -n "$uuid" ] && ln -sf "$(readlink -f "$dev")" "/dev/disk/by-uuid/$uuid"
    done
    logged chroot $T update-grub || { run_failed bootloader "update-grub failed: $(tail -n 1 "$LOG")"; return 1; }
    grep -q "root=UUID=\|root=/dev/mapper/vg0-root" $T/boot/grub/grub.cfg ||
        { run_failed bootloader "grub.cfg does not name the root by UUID"; return 1; }
    progress bootloader done "$DISK: BIOS boot partition and EFI/BOOT/BOOTX64.EFI"
}

step_network() {
    progress network start "${P_ADDRESS:-dhcp} on $P_MAC"
    cfg=$T/etc/cloud/cloud.cfg.d/50-edgemetal-network.cfg
    mkdir -p ${cfg%/*}
    {
        echo "# Written by the edgemetal installer: the boot NIC."
        echo "network:"
        echo "  version: 2"
        echo "  ethernets:"
        echo "    boot:"
        echo "      match: {macaddress: \"$P_MAC\"}"
        echo "      set-name: eth0"
        if [ -n "${P_ADDRESS:-}" ]; then
            echo "      addresses: [\"$P_ADDRESS\"]"
            # cloud-init 22.4 takes no `default` here: the prefix it means.
            [ -n "${P_GATEWAY:-}" ] && echo "      routes: [{to: 0.0.0.0/0, via: \"$P_GATEWAY\"}]"
        else
            echo "      dhcp4: true"
        fi
        dns=$(echo "${P_DNS:-}" | sed 's/[^ ][^ ]*/"&"/g; s/ \+/, /g')
        search=$(echo "${P_SEARCH:-}" | sed 's/[^ ][^ ]*/"&"/g; s/ \+/, /g')
        echo "      nameservers: {addresses: [$dns], search: [$search]}"
    } >$cfg
    progress network done "${P_ADDRESS:-dhcp}${P_GATEWAY:+ via $P_GATEWAY}"
}

step_seed() {
    # The seed URL carries the run's token: never in a log or report.
    progress seed start "cloud-init NoCloud seed on the rack"
    printf 'datasource:\n  NoCloud:\n    seedfrom: "%s"\n' "$P_SEED" >$T/etc/cloud/cloud.cfg.d/90-edgemetal-ds.cfg
    chmod 0600 $T/etc/cloud/cloud.cfg.d/90-edgemetal-ds.cfg
    [ -n "${P_HOSTNAME:-}" ] && echo "$P_HOSTNAME" >$T/etc/hostname
    progress seed done
}

deploy_finish() {
    sfdisk -d "/dev/$DISK" >/results/sfdisk-d 2>/dev/null
    sync
    for m in $T/sys $T/proc $T/dev $T/boot/efi $T; do umount "$m" 2>/dev/null; done
    command -v vgchange >/dev/null && [ "${P_LAYOUT:-flat}" = lvm ] && vgchange -an >>"$LOG" 2>&1
    sync
}

RUN_NEXT=off
echo deploy >/results/purpose
if deploy_plan && step_disk && step_partitioning && step_image && step_fstab &&
    step_bootloader && step_network && step_seed; then
    deploy_finish
    progress done done "installed on $DISK; rebooting into it"
    RUN_NEXT=reboot
else
    deploy_finish
fi
