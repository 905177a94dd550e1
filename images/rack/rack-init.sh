#!/bin/busybox sh
# edgemetal rack appliance: /init of the rack image, and the actions
# busybox init runs from /etc/inittab.
#
#   /init             (PID 1, no arguments) mounts /dev, /proc and /sys, makes
#                     the console stdio, then becomes busybox init
#   /init sysinit     modules, disks (config + state partitions), network
#   /init supervise   runs `edgemetal-rack run` and restarts it when it dies,
#                     with a backoff (respawned by init if it ever exits)
#   /init shutdown    stops the rack, unmounts the state partition
#
# Everything reads /run/edgemetal/site.conf, a copy of site.conf from the
# config partition (label EMCONFIG) taken at boot: key=value lines written by
# `edgemetal-rack image configure`. The image itself is never written: only
# the state partition (label EMSTATE, mounted at /var/lib/edgemetal) is.
#
# Console lines start with "edgemetal-init: ". They and the rack's own log
# go to /dev/kmsg, so they carry the kernel's timestamps (seconds since the
# kernel started), reach every console and stay readable with `dmesg`.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

RUN=/run/edgemetal
SITE=$RUN/site.conf
STATE=/var/lib/edgemetal
CONFIG_MOUNT=$RUN/config
RACK=/usr/bin/edgemetal-rack

say() {
    # /dev/kmsg keeps one record per write; fall back to the console
    # before /dev exists.
    if [ -w /dev/kmsg ]; then
        echo "edgemetal-init: $*" >/dev/kmsg
    else
        echo "edgemetal-init: $*"
    fi
}

# Whole seconds since the kernel started.
uptime_s() {
    read -r _up _ </proc/uptime
    echo "${_up%.*}"
}

# ---------------------------------------------------------------- site.conf

# Sets the site_* variables from $SITE. No eval: every key is assigned
# explicitly, and unknown keys are reported and ignored, so a typo cannot
# run anything.
load_site() {
    site_region_url= site_token= site_broker_url= site_insecure= site_ca=
    site_wan_if= site_wan_address= site_wan_gateway= site_dns=
    site_dhcp_ifs= site_addresses= site_hostname= site_ntp= site_status_listen=
    [ -r "$SITE" ] || return 1
    while IFS= read -r line || [ -n "$line" ]; do
        # Editors on other systems may leave CR LF line ends.
        line=${line%"$(printf '\r')"}
        case $line in '' | '#'*) continue ;; esac
        key=${line%%=*}
        value=${line#*=}
        case $key in
        version) ;;
        region_url) site_region_url=$value ;;
        enrolment_token) site_token=$value ;;
        broker_url) site_broker_url=$value ;;
        insecure_plaintext) site_insecure=$value ;;
        region_ca_file) site_ca=$value ;;
        wan_interface) site_wan_if=$value ;;
        wan_address) site_wan_address=$value ;;
        wan_gateway) site_wan_gateway=$value ;;
        dns_server) site_dns="$site_dns $value" ;;
        dhcp_interface) site_dhcp_ifs="$site_dhcp_ifs $value" ;;
        site_address) site_addresses="$site_addresses $value" ;;
        hostname) site_hostname=$value ;;
        ntp_server) site_ntp="$site_ntp $value" ;;
        status_listen) site_status_listen=$value ;;
        *) say "site.conf: ignoring unknown key '$key'" ;;
        esac
    done <"$SITE"
}

# Prints the kernel name of interface $1, given as a name (eth1) or a MAC
# address (52:54:00:12:34:56, any case); waits up to 10 s for it to appear
# (USB NICs come late).
resolve_if() {
    _want=$(echo "$1" | tr 'A-F' 'a-f')
    _tries=0
    while [ $_tries -lt 20 ]; do
        case $_want in
        *:*:*:*:*:*)
            for _dev in /sys/class/net/*; do
                [ -r "$_dev/address" ] || continue
                read -r _mac <"$_dev/address"
                if [ "$_mac" = "$_want" ]; then
                    echo "${_dev##*/}"
                    return 0
                fi
            done
            ;;
        *)
            if [ -e "/sys/class/net/$1" ]; then
                echo "$1"
                return 0
            fi
            ;;
        esac
        _tries=$((_tries + 1))
        coldplug
        sleep 0.5
    done
    return 1
}

# ------------------------------------------------------------------ sysinit

# Loads the drivers of the devices present: each device names its driver by
# an alias (modules.alias). Controllers' drivers bring new devices (virtio,
# USB, disks behind them), hence a few passes; callers that wait for a
# device run it again (USB devices appear a while after their controller).
coldplug() {
    _n=0
    while [ $_n -lt 4 ]; do
        _before=$(wc -l </proc/modules)
        cat /sys/bus/*/devices/*/modalias 2>/dev/null | sort -u |
            xargs -r modprobe -q -a 2>/dev/null
        [ "$(wc -l </proc/modules)" = "$_before" ] && return 0
        _n=$((_n + 1))
    done
}

load_modules() {
    # What no device asks for: file systems, checksums, input events.
    modprobe -q -a $(cat "/lib/modules/$(uname -r)/always") 2>/dev/null
    coldplug
}

# Prints the device holding the file system labelled $1, waiting up to 30 s
# (USB and some controllers take seconds to show their disks).
find_label() {
    _tries=0
    while [ $_tries -lt 60 ]; do
        if _dev=$(findfs "LABEL=$1" 2>/dev/null) && [ -b "$_dev" ]; then
            echo "$_dev"
            return 0
        fi
        _tries=$((_tries + 1))
        coldplug
        sleep 0.5
    done
    return 1
}

read_config() {
    mkdir -p "$CONFIG_MOUNT"
    if ! dev=$(find_label EMCONFIG); then
        say "ERROR no config partition (label EMCONFIG): is this an edgemetal rack disk?"
        return 1
    fi
    if ! mount -t vfat -o ro,nodev,nosuid,noexec "$dev" "$CONFIG_MOUNT"; then
        say "ERROR cannot mount the config partition $dev"
        return 1
    fi
    # Copies, then unmounts: the config partition stays clean whatever
    # happens to the power later.
    if [ -r "$CONFIG_MOUNT/site.conf" ]; then
        cp "$CONFIG_MOUNT/site.conf" "$SITE"
        chmod 0600 "$SITE"
    fi
    load_site
    if [ -n "$site_ca" ]; then
        case $site_ca in
        */* | ..*) say "site.conf: region_ca_file must be a file name on the config partition" ;;
        *) cp "$CONFIG_MOUNT/$site_ca" "$RUN/region-ca.pem" 2>/dev/null ||
            say "site.conf: $site_ca is missing from the config partition" ;;
        esac
    fi
    umount "$CONFIG_MOUNT"
    if [ ! -r "$SITE" ]; then
        say "ERROR the config partition has no site.conf: run 'edgemetal-rack image configure' on the image"
        return 1
    fi
    say "site configuration read from $dev"
}

mount_state() {
    mkdir -p "$STATE"
    if ! dev=$(find_label EMSTATE); then
        say "ERROR no state partition (label EMSTATE)"
        return 1
    fi
    # The ext4 journal makes an unclean power-off safe; there is no fsck here.
    if ! mount -t ext4 -o noatime,nodev,nosuid,noexec "$dev" "$STATE"; then
        say "ERROR cannot mount the state partition $dev: the rack will not start"
        return 1
    fi
    chmod 0700 "$STATE"
    say "state partition $dev mounted on $STATE"
}

setup_network() {
    ip link set lo up
    if [ -n "$site_wan_if" ]; then
        if wan=$(resolve_if "$site_wan_if"); then
            ip link set "$wan" up
            case $site_wan_address in
            '' | dhcp)
                # In the background: the rack retries the region until the
                # lease comes, and DHCP serving must not wait for the WAN.
                udhcpc -b -S -i "$wan" -s /etc/udhcpc/default.script \
                    -p "$RUN/udhcpc-$wan.pid" -x "hostname:$(hostname)" >/dev/null 2>&1
                say "WAN $wan: DHCP"
                ;;
            *)
                ip addr add "$site_wan_address" dev "$wan"
                [ -n "$site_wan_gateway" ] &&
                    ip route add default via "$site_wan_gateway" dev "$wan" onlink
                say "WAN $wan: $site_wan_address${site_wan_gateway:+ via $site_wan_gateway}"
                ;;
            esac
        else
            say "ERROR WAN interface $site_wan_if not found"
        fi
    fi
    # Static DNS servers win over those of a DHCP lease (see udhcpc.script).
    if [ -n "$site_dns" ]; then
        for d in $site_dns; do echo "nameserver $d"; done >"$RUN/resolv.conf"
        touch "$RUN/dns-static"
    fi
    for spec in $site_addresses; do
        ifspec=${spec%=*}
        cidr=${spec##*=}
        if dev=$(resolve_if "$ifspec"); then
            ip link set "$dev" up
            ip addr add "$cidr" dev "$dev"
            say "site $dev: $cidr"
        else
            say "ERROR site interface $ifspec not found"
        fi
    done
}

# Logs once when the rack serves DHCP from a snapshot that holds a subnet:
# the start-up time the image promises, in seconds since the kernel started.
watch_ready() {
    listen=${site_status_listen:-127.0.0.1:5250}
    case $listen in 0.0.0.0:*) listen=127.0.0.1:${listen#*:} ;; esac
    while :; do
        # Not busybox wget: the static build crashes resolving names.
        s=$( (
            printf 'GET /status HTTP/1.0\r\nHost: rack\r\n\r\n'
            sleep 0.5
        ) | nc -w 2 "${listen%:*}" "${listen##*:}" 2>/dev/null)
        case $s in
        *'"service":"Dhcp","state":"Healthy"'*'"subnets":[{'*)
            say "serving DHCP $(cat /proc/uptime | cut -d' ' -f1) s after the kernel started"
            return 0
            ;;
        esac
        sleep 0.2
    done
}

sysinit() {
    say "starting ($(cat /etc/edgemetal-release 2>/dev/null))"
    mkdir -p /run /tmp /var/lib
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
    mkdir -p "$RUN"
    chmod 0700 "$RUN"
    load_modules
    read_config
    mount_state
    hostname "${site_hostname:-edgemetal-rack}"
    setup_network
    if [ -n "$site_ntp" ]; then
        # TLS to the region needs a sane clock; the RTC usually gives one.
        ntpd $(for server in $site_ntp; do echo "-p $server"; done)
    fi
    # The power button (ACPI) powers the appliance off cleanly.
    acpid -c /etc/acpi -l /dev/kmsg 2>/dev/null
    [ -n "$site_dhcp_ifs" ] && watch_ready &
    say "system up after $(uptime_s) s; starting the rack"
}

# ---------------------------------------------------------------- supervise

# Copies the rack's output, line by line, into the kernel log; long lines are
# split (a /dev/kmsg record holds about 1 KiB).
kmsg_pump() {
    while IFS= read -r line; do
        while [ ${#line} -gt 900 ]; do
            echo "${line:0:900}"
            line=${line:900}
        done
        echo "$line"
    done >/dev/kmsg
}

supervise() {
    backoff=1
    fifo=$RUN/rack-log.fifo
    [ -p "$fifo" ] || mkfifo -m 0600 "$fifo"
    while :; do
        [ -e "$RUN/stopping" ] && exit 0
        load_site
        if ! grep -q " $STATE " /proc/mounts; then
            # The identity lives there: without it the rack would enrol
            # again with a spent token.
            say "ERROR the state partition is not mounted; the rack stays stopped"
            sleep 60
            continue
        fi
        ifs=
        for spec in $site_dhcp_ifs; do
            if dev=$(resolve_if "$spec"); then
                ifs=${ifs:+$ifs,}$dev
            else
                say "ERROR DHCP interface $spec not found"
            fi
        done
        started=$(uptime_s)
        kmsg_pump <"$fifo" &
        pump=$!
        (
            # Settings go through the environment, not the command line:
            # /proc/PID/cmdline is readable by every local process.
            export EDGEMETAL_RACK_STATE_DIR="$STATE"
            export EDGEMETAL_RACK_IPXE_DIR=/usr/lib/ipxe
            export NO_COLOR=1 EDGEMETAL_LOG="${EDGEMETAL_LOG:-info}"
            [ -n "$site_region_url" ] && export EDGEMETAL_RACK_REGION_URL="$site_region_url"
            # The token only until the rack holds an identity.
            [ -n "$site_token" ] && [ ! -e "$STATE/identity.json" ] &&
                export EDGEMETAL_RACK_ENROLMENT_TOKEN="$site_token"
            [ -n "$site_broker_url" ] && export EDGEMETAL_RACK_BROKER_URL="$site_broker_url"
            [ "$site_insecure" = true ] && export EDGEMETAL_RACK_INSECURE_PLAINTEXT=true
            [ -r "$RUN/region-ca.pem" ] && export EDGEMETAL_RACK_REGION_CA_FILE="$RUN/region-ca.pem"
            [ -n "$ifs" ] && export EDGEMETAL_RACK_DHCP_INTERFACES="$ifs"
            [ -n "$site_status_listen" ] && export EDGEMETAL_RACK_STATUS_LISTEN="$site_status_listen"
            exec "$RACK" run
        ) >"$fifo" 2>&1 &
        rack=$!
        echo "$rack" >"$RUN/rack.pid"
        wait "$rack"
        status=$?
        wait "$pump"
        rm -f "$RUN/rack.pid"
        [ -e "$RUN/stopping" ] && exit 0
        ran=$(($(uptime_s) - started))
        # A rack that ran for a while gets a fresh start; one that keeps
        # failing at once backs off up to 30 s (e.g. the region is not
        # reachable yet for its first enrolment).
        [ $ran -ge 60 ] && backoff=1
        say "edgemetal-rack exited (status $status) after ${ran} s; restarting in ${backoff} s"
        sleep "$backoff"
        backoff=$((backoff * 2))
        [ $backoff -gt 30 ] && backoff=30
    done
}

# ----------------------------------------------------------------- shutdown

shutdown_rack() {
    touch "$RUN/stopping"
    if [ -r "$RUN/rack.pid" ]; then
        read -r pid <"$RUN/rack.pid"
        kill -TERM "$pid" 2>/dev/null
        n=0
        while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do
            sleep 0.2
            n=$((n + 1))
        done
        kill -KILL "$pid" 2>/dev/null
        say "rack stopped"
    fi
    for f in "$RUN"/udhcpc-*.pid; do
        [ -r "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    sync
    if grep -q " $STATE " /proc/mounts; then
        if umount "$STATE" 2>/dev/null || mount -o remount,ro "$STATE"; then
            say "state partition clean"
        else
            say "ERROR the state partition is still busy"
        fi
    fi
}

# --------------------------------------------------------------------- main

case "$1" in
sysinit) sysinit ;;
supervise) supervise ;;
shutdown) shutdown_rack ;;
'')
    if [ "$$" != 1 ]; then
        echo "usage: $0 sysinit|supervise|shutdown" >&2
        exit 2
    fi
    mkdir -p /dev /proc /sys
    mount -t devtmpfs devtmpfs /dev
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    exec </dev/console >/dev/console 2>&1
    exec /bin/busybox init
    ;;
*)
    echo "usage: $0 sysinit|supervise|shutdown" >&2
    exit 2
    ;;
esac
