#!/usr/bin/env bash
# Runs the whole test suite. Installs the Debian packages the tests need when
# missing; the tests themselves start throwaway PostgreSQL and Mosquitto
# servers on free loopback ports and remove them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v udhcpc >/dev/null 2>&1 || missing+=(udhcpc)
command -v dhclient >/dev/null 2>&1 || missing+=(isc-dhcp-client)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v perfdhcp >/dev/null 2>&1 || [[ -x /usr/sbin/perfdhcp ]] || missing+=(kea-admin)
command -v dhcrelay >/dev/null 2>&1 || [[ -x /usr/sbin/dhcrelay ]] || missing+=(isc-dhcp-relay)
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
[[ -f /usr/lib/ipxe/qemu/pxe-e1000.rom ]] || missing+=(ipxe-qemu)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v tftp >/dev/null 2>&1 || missing+=(tftp-hpa)
command -v atftp >/dev/null 2>&1 || missing+=(atftp)
[[ -f /usr/lib/ipxe/undionly.kpxe ]] || missing+=(ipxe)
command -v ipmi_sim >/dev/null 2>&1 || missing+=(openipmi)
command -v ipmitool >/dev/null 2>&1 || missing+=(ipmitool)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v dnsmasq >/dev/null 2>&1 || [[ -x /usr/sbin/dnsmasq ]] || missing+=(dnsmasq)
[[ -x /bin/busybox ]] || missing+=(busybox-static)
# The rack image build (images/rack/build.sh): bootloader, FAT and ext4
# partitions made as files, the partition table.
command -v syslinux >/dev/null 2>&1 || missing+=(syslinux)
[[ -f /usr/lib/syslinux/mbr/mbr.bin ]] || missing+=(syslinux-common)
command -v mcopy >/dev/null 2>&1 || missing+=(mtools)
command -v mkfs.fat >/dev/null 2>&1 || [[ -x /usr/sbin/mkfs.fat ]] || missing+=(dosfstools)
command -v sfdisk >/dev/null 2>&1 || [[ -x /usr/sbin/sfdisk ]] || missing+=(fdisk)
command -v debugfs >/dev/null 2>&1 || [[ -x /usr/sbin/debugfs ]] || missing+=(e2fsprogs)
# Syslog senders (util-linux logger; busybox logger/syslogd is busybox-static).
command -v logger >/dev/null 2>&1 || missing+=(bsdutils)
# The APT proxy test's local repository.
command -v apt-ftparchive >/dev/null 2>&1 || missing+=(apt-utils)
command -v dpkg-scanpackages >/dev/null 2>&1 || missing+=(dpkg-dev)
# NTP: an upstream server and the clients that query the rack.
command -v chronyd >/dev/null 2>&1 || [[ -x /usr/sbin/chronyd ]] || missing+=(chrony)
command -v ntpdate >/dev/null 2>&1 || [[ -x /usr/sbin/ntpdate ]] || missing+=(ntpsec-ntpdate)
# Deploy: the OS image build (mmdebstrap, zstd), UEFI firmware for the
# machines, and the owner's ssh into the deployed one.
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
[[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ]] || missing+=(ovmf)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
# Hardware tests in the ephemeral image's tools (from this host's
# packages), their squashfs, and the bench switch's LLDP.
command -v smartctl >/dev/null 2>&1 || [[ -x /usr/sbin/smartctl ]] || missing+=(smartmontools)
[[ -x /usr/sbin/memtester ]] || missing+=(memtester)
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v stress-ng >/dev/null 2>&1 || missing+=(stress-ng)
[[ -x /usr/sbin/lldpd ]] || missing+=(lldpd)
command -v mksquashfs >/dev/null 2>&1 || missing+=(squashfs-tools)
# Router Solicitations from a real client (rdisc6) and the captures that
# check every one was answered.
command -v rdisc6 >/dev/null 2>&1 || missing+=(ndisc6)
command -v tcpdump >/dev/null 2>&1 || [[ -x /usr/bin/tcpdump ]] || missing+=(tcpdump)
# A kernel for the network-boot test's machine (not booted by this host).
compgen -G "/boot/vmlinuz-*" >/dev/null || missing+=(linux-image-amd64)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # What is installed here is neither started nor left enabled at boot
    # (the tests start the daemons they need, on loopback or in namespaces):
    # policy-rc.d refuses starts while apt runs, and units the install
    # enabled are disabled again.
    enabled() { systemctl list-unit-files --state=enabled --no-legend 2>/dev/null | awk '{ print $1 }' | sort; }
    enabled_before=$(enabled)
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made_policy=1
    fi
    status=0
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
    [[ -n $made_policy ]] && rm -f "$policy"
    comm -13 <(echo "$enabled_before") <(enabled) | xargs -r systemctl disable --quiet 2>/dev/null || true
    ((status == 0)) || exit "$status"
fi

cargo fmt --all -- --check
# Build once: the end-to-end tests run these binaries.
cargo build --workspace --all-targets
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The region's modules: no cycles, the API used only by serve.
python3 scripts/module-graph.py >/dev/null
rm -rf target/test-logs
cargo test --workspace
scripts/check-logs-for-secrets.sh
