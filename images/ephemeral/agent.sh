#!/bin/busybox sh
# edgemetal commissioning agent: /init of the ephemeral image.
#
# Brings up the NIC the machine PXE-booted from, reads its metadata from the
# rack (edgemetal.rack= on the kernel command line), gathers the raw hardware
# facts into /results (one file per output), POSTs them as a tar to the
# metadata's results_url and powers the machine off. Progress goes to the
# console as "edgemetal-agent: ..." lines; a fatal error prints
# "edgemetal-agent: FAILED <why>" and powers off 10 s later.
#
# Kernel command line: edgemetal.rack=http://IP:PORT BOOTIF=01-aa-bb-cc-dd-ee-ff
# edgemetal.purpose=PURPOSE
# Metadata (GET $rack/metadata/v1/meta-data, text/plain): key=value lines with
# at least machine_id hostname token purpose results_url; others are ignored.

/bin/busybox mkdir -p /proc /sys /dev /tmp /run /etc /results /bin /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy
umask 022

say() {
    echo "edgemetal-agent: $*"
    # Once the rack's syslog relay is known, every line also goes there.
    [ -n "${SYSLOG:-}" ] && logger -t edgemetal-agent -p user.notice -- "$*" 2>/dev/null
    return 0
}

off() {
    # syslogd forwards as it reads: a moment for the last lines to leave.
    [ -n "${SYSLOG:-}" ] && sleep 0.3
    sync
    poweroff -f
    # Still here: nothing else to do.
    while :; do sleep 60; done
}

fail() {
    say "FAILED $*"
    sleep 10
    off
}

# /init must never exit (the kernel would panic): whatever ends the shell
# ends it as a failure.
trap 'say "FAILED the agent stopped unexpectedly"; sleep 10; sync; poweroff -f' EXIT

# Whole seconds since boot.
uptime_s() {
    read -r _up _ </proc/uptime
    echo "${_up%.*}"
}

# Centiseconds since boot, for timings a whole second would blur.
uptime_cs() {
    read -r _up _ </proc/uptime
    _cs=${_up#*.}
    echo "$((${_up%.*} * 100 + ${_cs#0}))"
}

# _v = first line of file $1 with surrounding blanks trimmed, tabs made
# spaces; empty when missing or unreadable (e.g. carrier of a down link).
rd() {
    _v=
    [ -r "$1" ] && read -r _v 2>/dev/null <"$1"
    _v=${_v//	/ }
}

say "starting (kernel $(uname -r))"

# --- modules ---------------------------------------------------------------
load_modules() {
    dir=/lib/modules/$(uname -r)
    if [ ! -f "$dir/load-order" ]; then
        say "no modules for kernel $(uname -r)"
        return
    fi
    # One busybox exec per module: under emulation every fork counts.
    present=" "
    while read -r m _; do present="$present$m "; done </proc/modules
    loaded=0
    failed=
    while read -r name file; do
        case $present in *" $name "*) continue ;; esac
        [ -f "$dir/$file" ] || continue
        if insmod "$dir/$file" 2>/tmp/insmod.err; then
            loaded=$((loaded + 1))
        else
            read -r err </tmp/insmod.err
            case $err in
            *"File exists"*) ;;
            *) failed="$failed $name" ;;
            esac
        fi
    done <"$dir/load-order"
    say "loaded $loaded modules${failed:+, failed:$failed}"
}
load_modules

# --- kernel command line ---------------------------------------------------
RACK=
BOOTMAC=
CMD_PURPOSE=
read -r cmdline </proc/cmdline
set -f
for arg in $cmdline; do
    case $arg in
    edgemetal.rack=*) RACK=${arg#*=} ;;
    BOOTIF=*) BOOTMAC=${arg#*=} ;;
    edgemetal.purpose=*) CMD_PURPOSE=${arg#*=} ;;
    esac
done
set +f
RACK=${RACK%/}
[ -n "$RACK" ] || fail "no edgemetal.rack= on the kernel command line"
# PXELINUX style: hardware type 01, then the MAC with dashes.
case $BOOTMAC in
??-??-??-??-??-??-??) BOOTMAC=${BOOTMAC#??-} ;;
esac
BOOTMAC=$(echo "$BOOTMAC" | tr 'ABCDEF-' 'abcdef:')
say "rack $RACK, boot MAC ${BOOTMAC:-unknown}, purpose ${CMD_PURPOSE:-unknown}"

# --- network ---------------------------------------------------------------
ip link set dev lo up

# The interface whose MAC is the boot MAC, waiting up to 10 s for it.
IF=
tries=0
while [ $tries -lt 100 ]; do
    any=
    for d in /sys/class/net/*; do
        n=${d##*/}
        [ "$n" = lo ] && continue
        [ -e "$d/address" ] || continue
        any=1
        rd "$d/address"
        if [ -n "$BOOTMAC" ] && [ "$_v" = "$BOOTMAC" ]; then
            IF=$n
            break 2
        fi
    done
    [ -z "$BOOTMAC" ] && [ -n "$any" ] && break
    sleep 0.1
    tries=$((tries + 1))
done

# Fallback: the first interface with carrier.
if [ -z "$IF" ]; then
    [ -n "$BOOTMAC" ] && say "no interface has MAC $BOOTMAC, using the first with carrier"
    for d in /sys/class/net/*; do
        n=${d##*/}
        [ "$n" = lo ] || [ ! -e "$d/address" ] || ip link set dev "$n" up 2>/dev/null
    done
    tries=0
    while [ -z "$IF" ] && [ $tries -lt 50 ]; do
        for d in /sys/class/net/*; do
            n=${d##*/}
            [ "$n" = lo ] && continue
            rd "$d/carrier"
            if [ "$_v" = 1 ]; then
                IF=$n
                break
            fi
        done
        [ -n "$IF" ] && break
        sleep 0.1
        tries=$((tries + 1))
    done
    [ -n "$IF" ] || fail "no network interface with carrier"
fi

# Give the link up to 5 s to come up so the first DHCP discover is not lost.
ip link set dev "$IF" up
tries=0
while [ $tries -lt 50 ]; do
    rd "/sys/class/net/$IF/carrier"
    [ "$_v" = 1 ] && break
    sleep 0.1
    tries=$((tries + 1))
done
[ "$_v" = 1 ] || say "$IF has no carrier yet, trying DHCP anyway"

say "DHCP on $IF"
attempt=1
while :; do
    udhcpc -i "$IF" -n -q -t 10 -T 2 -s /etc/udhcpc/default.script && break
    [ $attempt -ge 3 ] && fail "no DHCP lease on $IF"
    attempt=$((attempt + 1))
    say "DHCP on $IF failed, retrying"
done
addr=$(ip -4 -o addr show dev "$IF" | sed -n 's/.* inet \([^ ]*\).*/\1/p')
gw=$(ip -4 route show default | sed -n 's/^default via \([^ ]*\).*/\1/p')
say "$IF has $addr${gw:+ via $gw}"

# --- metadata --------------------------------------------------------------
MD_URL=$RACK/metadata/v1/meta-data
deadline=$(($(uptime_s) + 120))
attempt=0
while :; do
    attempt=$((attempt + 1))
    if timeout 15 wget -q -O /tmp/meta-data.part "$MD_URL" 2>/tmp/wget.err; then
        tr -d '\r' </tmp/meta-data.part >/tmp/meta-data
        break
    fi
    err=$(tail -n 1 /tmp/wget.err)
    [ "$(uptime_s)" -ge $deadline ] && fail "no metadata from $MD_URL: ${err:-timed out}"
    [ $((attempt % 10)) = 1 ] && say "metadata from $MD_URL not available yet (${err:-timed out}), retrying"
    sleep 2
done

MACHINE_ID=
MD_HOSTNAME=
DEPLOY_URL=
PROGRESS_URL=
ERASE=
SECURE_FALLBACK=
TOKEN=
PURPOSE=
RESULTS_URL=
while IFS= read -r line || [ -n "$line" ]; do
    case $line in
    *=*) ;;
    *) continue ;;
    esac
    val=${line#*=}
    case ${line%%=*} in
    machine_id) MACHINE_ID=$val ;;
    hostname) MD_HOSTNAME=$val ;;
    token) TOKEN=$val ;;
    purpose) PURPOSE=$val ;;
    results_url) RESULTS_URL=$val ;;
    syslog) SYSLOG_TARGET=$val ;;
    deploy_url) DEPLOY_URL=$val ;;
    progress_url) PROGRESS_URL=$val ;;
    erase) ERASE=$val ;;
    secure_fallback) SECURE_FALLBACK=$val ;;
    tests) TESTS=$val ;;
    lldp_secs) LLDP_SECS=$val ;;
    tools_url) TOOLS_URL=$val ;;
    esac
done </tmp/meta-data
rm -f /tmp/meta-data /tmp/meta-data.part
for key in machine_id hostname token purpose results_url; do
    case $key in
    machine_id) val=$MACHINE_ID ;;
    hostname) val=$MD_HOSTNAME ;;
    token) val=$TOKEN ;;
    purpose) val=$PURPOSE ;;
    results_url) val=$RESULTS_URL ;;
    esac
    [ -n "$val" ] || fail "metadata has no $key"
done
hostname "$MD_HOSTNAME" 2>/dev/null
# The rack's syslog relay (the subnet's internal name, resolved by the
# rack's DNS): busybox syslogd forwards everything logged from here on, the
# kernel's messages (klogd) included.
if [ -n "${SYSLOG_TARGET:-}" ]; then
    # busybox's own resolver (nslookup) asks the rack's DNS; syslogd gets
    # the address, as a static busybox's syslogd may not resolve names.
    log_host=${SYSLOG_TARGET%:*}
    log_port=${SYSLOG_TARGET##*:}
    log_addr=$(nslookup "$log_host" 2>/dev/null | awk '/^Address/ { a = $NF } END { print a }')
    log_addr=${log_addr%:*}
    if [ -z "$log_addr" ]; then
        # No resolver (the subnet hands out no DNS server): this rack.
        log_addr=${RACK#http://}
        log_addr=${log_addr%%[:/]*}
        say "cannot resolve $log_host; logging to this rack, $log_addr"
    fi
    if [ -n "$log_addr" ] && syslogd -R "$log_addr:$log_port" -L 2>/dev/null; then
        klogd 2>/dev/null
        SYSLOG="$SYSLOG_TARGET ($log_addr)"
    fi
fi
say "metadata: machine_id=$MACHINE_ID hostname=$MD_HOSTNAME purpose=$PURPOSE results_url=$RESULTS_URL${SYSLOG:+ syslog=$SYSLOG}"

# The POST goes over busybox nc: busybox wget's --post-file stops at the
# first NUL byte (it sends the file as a C string), which cuts a tar short.
case $RESULTS_URL in
http://*) ;;
*) fail "results_url must be an http:// URL" ;;
esac

# --- gather ----------------------------------------------------------------
R=/results
cat /proc/cpuinfo >$R/cpuinfo
cat /proc/meminfo >$R/meminfo
cat /proc/iomem >$R/iomem
cat /proc/cmdline >$R/cmdline
uname -a >$R/uname
if [ -d /sys/firmware/efi ]; then echo uefi; else echo bios; fi >$R/firmware

T='	'
for d in /sys/block/*; do
    n=${d##*/}
    case $n in
    loop* | ram* | zram* | sr* | fd*) continue ;;
    esac
    rd "$d/size"
    size=$((${_v:-0} * 512))
    rd "$d/serial"
    [ -n "$_v" ] || rd "$d/device/serial"
    # SCSI and SATA disks: the unit serial number VPD page (4-byte header).
    if [ -z "$_v" ] && [ -r "$d/device/vpd_pg80" ]; then
        _v=$(tail -c +5 "$d/device/vpd_pg80" | tr -d '\000\t\r\n' | sed -e 's/^ *//' -e 's/ *$//')
    fi
    serial=$_v
    rd "$d/device/model"
    model=$_v
    rd "$d/queue/rotational"
    rot=$_v
    rd "$d/removable"
    echo "name=$n${T}size_bytes=$size${T}serial=$serial${T}model=$model${T}rotational=$rot${T}removable=$_v"
done >$R/block

for d in /sys/class/net/*; do
    n=${d##*/}
    [ "$n" = lo ] && continue
    rd "$d/address"
    mac=$_v
    rd "$d/operstate"
    state=$_v
    rd "$d/carrier"
    carrier=$_v
    rd "$d/speed"
    speed=$_v
    driver=
    if [ -e "$d/device/driver" ]; then
        driver=$(readlink "$d/device/driver")
        driver=${driver##*/}
    fi
    echo "name=$n${T}mac=$mac${T}operstate=$state${T}carrier=$carrier${T}speed=$speed${T}driver=$driver"
done >$R/net

for key in sys_vendor product_name product_version product_serial product_uuid \
    board_vendor board_name bios_vendor bios_version bios_date chassis_type; do
    f=/sys/class/dmi/id/$key
    [ -r "$f" ] || continue
    rd "$f"
    echo "$key=$_v"
done >$R/dmi

dmesg >$R/dmesg
cpus=$(grep -c '^processor' $R/cpuinfo)
mem=$(sed -n 's/^MemTotal: *//p' $R/meminfo)
disks=$(sed -n 's/^name=\([^	]*\).*/\1/p' $R/block | tr '\n' ' ')
disks=${disks% }
say "gathered: $cpus CPUs, MemTotal $mem, disks: ${disks:-none}"

# Deploy and release do their run here; their outputs join the inventory.
RUN_NEXT=off
# progress STEP STATE [DETAIL]: a step of the run, to the rack ($PROGRESS_URL,
# never fatal) and to the run's log ($LOG).
progress() {
    echo "$(uptime_s) s: $1 $2${3:+ $3}" >>"$LOG"
    say "$1: $2${3:+ ($3)}"
    wget -q -O /dev/null --header "Authorization: Bearer $TOKEN" \
        --header "Content-Type: text/plain" \
        --post-data "step=$1 state=$2 detail=$3" "$PROGRESS_URL" 2>/dev/null ||
        say "progress report to $PROGRESS_URL failed (going on)"
    return 0
}

case $PURPOSE in
commission)
    if [ -n "${TESTS:-}" ] || [ "${LLDP_SECS:-0}" -gt 0 ]; then
        . /lib/edgemetal/tests.sh
    fi
    ;;
deploy)
    [ -n "${DEPLOY_URL:-}" ] && [ -n "${PROGRESS_URL:-}" ] || fail "metadata for deploy has no deploy_url or progress_url"
    . /lib/edgemetal/deploy.sh
    ;;
release)
    [ -n "${PROGRESS_URL:-}" ] || fail "metadata for release has no progress_url"
    . /lib/edgemetal/erase.sh
    ;;
esac

tar -cf /tmp/results.tar -C $R . || fail "cannot tar the results"

# --- post ------------------------------------------------------------------
rest=${RESULTS_URL#http://}
hostport=${rest%%/*}
case $rest in
*/*) path=/${rest#*/} ;;
*) path=/ ;;
esac
case $hostport in
\[*\]:*)
    host=${hostport%:*}
    port=${hostport##*:}
    ;;
\[*\]) host=$hostport port=80 ;;
*:*)
    host=${hostport%:*}
    port=${hostport##*:}
    ;;
*) host=$hostport port=80 ;;
esac
host=${host#\[}
host=${host%\]}
size=$(wc -c </tmp/results.tar)

post() {
    {
        printf 'POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: edgemetal-agent\r\n' "$path" "$hostport"
        printf 'Authorization: Bearer %s\r\n' "$TOKEN"
        printf 'Content-Type: application/x-tar\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$size"
        cat /tmp/results.tar
    } >/tmp/post.request
    # nc half-closes the connection when its input ends, and a server may
    # take that as the client going away before it answers (hyper does).
    # So nc reads from a FIFO held open until the server has answered and
    # closed the connection (nc then exits) or 60 s have passed.
    rm -f /tmp/post.fifo
    mkfifo /tmp/post.fifo
    nc -w 10 "$host" "$port" </tmp/post.fifo >/tmp/post.response 2>/tmp/post.err &
    ncpid=$!
    exec 3>/tmp/post.fifo
    cat /tmp/post.request >&3
    waited=0
    while kill -0 $ncpid 2>/dev/null && [ $waited -lt 600 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    exec 3>&-
    kill $ncpid 2>/dev/null
    wait $ncpid 2>/dev/null
    status=
    read -r _proto status _ </tmp/post.response 2>/dev/null
    case $status in
    2??) return 0 ;;
    esac
    return 1
}

say "posting $size bytes of results to $RESULTS_URL"
deadline=$(($(uptime_s) + 120))
attempt=0
while :; do
    attempt=$((attempt + 1))
    post && break
    why=${status:+HTTP $status}
    if [ -n "$status" ]; then
        # The first line of the answer's body says why.
        body=$(tr -d '\r' </tmp/post.response | awk 'b { print; exit } /^$/ { b = 1 }')
        why="$why${body:+: $body}"
    else
        why=$(tail -n 1 /tmp/post.err)
    fi
    # A refusal does not change on retry; a missing route, a timeout or a
    # server error might.
    case $status in
    4??) case $status in 404 | 408 | 425 | 429) ;; *) fail "results refused by $RESULTS_URL: $why" ;; esac ;;
    esac
    [ "$(uptime_s)" -ge $deadline ] && fail "results not accepted by $RESULTS_URL: ${why:-no answer}"
    [ $((attempt % 10)) = 1 ] && say "results not accepted yet (${why:-no answer}), retrying"
    sleep 2
done
if [ "$RUN_NEXT" = reboot ]; then
    say "results accepted (HTTP $status) after $(uptime_s) s, rebooting into the installed system"
    sync
    reboot -f
fi
say "results accepted (HTTP $status) after $(uptime_s) s, powering off"
off
