#!/bin/sh
# mmdebstrap customize hook for the OS image: $1 is the root being built.
# Makes it a machine image: serial console, no host keys of its own (each
# machine makes its own at first boot), networking by systemd-networkd as
# cloud-init renders it, and cloud-init reading only the NoCloud seed the
# installer points it at.
set -eu
root=$1

cat >"$root/etc/default/grub" <<'GRUB'
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB

echo debian >"$root/etc/hostname"
# mmdebstrap copies the build host's resolv.conf; the image uses resolved.
rm -f "$root/etc/resolv.conf"
ln -s ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# Host keys are per machine: made at first boot (cloud-init, or ssh's unit).
rm -f "$root"/etc/ssh/ssh_host_*
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1

mkdir -p "$root/etc/cloud/cloud.cfg.d"
cat >"$root/etc/cloud/cloud.cfg.d/01_edgemetal.cfg" <<'CFG'
# edgemetal: the installer writes the network (50-edgemetal-network.cfg)
# and the rack's NoCloud seed (90-edgemetal-ds.cfg).
datasource_list: [NoCloud, None]
system_info:
  network:
    renderers: [networkd]
ssh_genkeytypes: [ed25519]
# No locales package (docs and locales are left out): cc_locale's
# update-locale would fail and mark cloud-init's status as error.
locale: false
# A later boot whose seed is gone (the rack withdraws it once deployed)
# keeps this instance instead of starting a new one.
manual_cache_clean: true
CFG

chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
