# edgemetal hardware tests and LLDP, sourced by agent.sh for a commissioning
# run whose metadata asks for them: $TESTS (comma-separated: smartctl,
# memtester, fio, stress-ng) and $LLDP_SECS (how long to listen for LLDP).
#
# The tools come from Debian's packages, in the ephemeral image's squashfs
# at $TOOLS_URL (large: fio links Ceph), fetched from the rack only now. It
# is mounted on /tools and each tool runs chrooted there.
#
# Outputs, which the region parses into the inventory:
#   $R/tests         one line per test: name= result=passed|failed|skipped seconds= detail=
#   $R/lldp          one line per interface with a neighbour: name= chassis_id=
#                    system_name= port_id= port_description=
#   $R/test-NAME.log each tool's own output

TOOLS=/tools
: >$R/tests

# result NAME RESULT SECONDS DETAIL
result() {
    printf 'name=%s\tresult=%s\tseconds=%s\tdetail=%s\n' "$1" "$2" "$3" "$4" >>$R/tests
    say "test $1: $2${4:+ ($4)}"
}

# Every requested test fails with $1 (the tools are not usable).
fail_all() {
    for t in $(echo "${TESTS:-}" | tr ',' ' '); do result "$t" failed 0 "$1"; done
    TESTS=
    LLDP_SECS=0
}

in_tools() { chroot $TOOLS "$@"; }

mount_tools() {
    [ -n "${TOOLS_URL:-}" ] || { fail_all "the rack has no tools image (upload the ephemeral image's squashfs)"; return 1; }
    wget -q -O /tmp/tools.squashfs "$TOOLS_URL" || { fail_all "cannot fetch the tools image"; return 1; }
    mkdir -p $TOOLS
    mount -t squashfs -o loop,ro /tmp/tools.squashfs $TOOLS || { fail_all "cannot mount the tools image"; return 1; }
    mount -o bind /dev $TOOLS/dev && mount -t proc proc $TOOLS/proc &&
        mount -t sysfs sysfs $TOOLS/sys && mount -t tmpfs tmpfs $TOOLS/tmp &&
        mount -t tmpfs tmpfs $TOOLS/run || { fail_all "cannot prepare the tools image"; return 1; }
}

# The fixed disks (not removable), by kernel name.
FIXED=
for d in $disks; do
    rd "/sys/block/$d/removable"
    [ "$_v" = 1 ] || FIXED="$FIXED $d"
done

test_smartctl() {
    healthy= status=passed detail=
    for d in $FIXED; do
        in_tools /usr/sbin/smartctl -H -i "/dev/$d" >>"$LOGF" 2>&1
        rc=$?
        # A bit mask: bits 0-2, the device could not be asked (no SMART
        # here); bit 3, the disk says it is failing; bits 4-5, thresholds.
        if [ $((rc & 7)) -ne 0 ]; then
            detail="$detail $d: no SMART;"
        elif [ $((rc & 56)) -ne 0 ]; then
            status=failed
            detail="$detail $d: failing (smartctl exit $rc);"
        else
            healthy=1
            detail="$detail $d: healthy;"
        fi
    done
    [ $status = passed ] && [ -z "$healthy" ] && status=skipped
    STATUS=$status DETAIL=${detail# }
}

test_memtester() {
    STATUS=failed DETAIL="memtester 8M 1 failed"
    in_tools /usr/sbin/memtester 8M 1 >>"$LOGF" 2>&1 && STATUS=passed DETAIL="8 MiB, 1 loop, no errors"
}

test_fio() {
    STATUS=passed DETAIL=
    [ -n "$FIXED" ] || { STATUS=skipped DETAIL="no fixed disk"; return; }
    for d in $FIXED; do
        # Terse output: field 8 is read IOPS, 49 write IOPS.
        if in_tools /usr/bin/fio --name=edgemetal --filename="/dev/$d" --rw=randrw --bs=4k \
            --direct=1 --ioengine=psync --size=16M --minimal >/tmp/fio.out 2>>"$LOGF"; then
            cat /tmp/fio.out >>"$LOGF"
            iops=$(awk -F';' '{ printf "read %d IOPS, write %d IOPS", $8, $49 }' /tmp/fio.out)
            DETAIL="$DETAIL $d: $iops;"
        else
            STATUS=failed
            DETAIL="$DETAIL $d: fio failed: $(tail -n 1 "$LOGF");"
        fi
    done
    DETAIL=${DETAIL# }
}

test_stress_ng() {
    STATUS=failed DETAIL="stress-ng failed or found a wrong result"
    in_tools /usr/bin/stress-ng --temp-path /tmp --cpu 0 --cpu-method all --verify --timeout 5s --metrics-brief \
        >>"$LOGF" 2>&1 && STATUS=passed DETAIL="$cpus CPUs for 5 s, results verified"
}

start_lldp() {
    mkdir -p $TOOLS/run/lldpd
    # Receive only: the machine listens to its switch and says nothing.
    in_tools /usr/sbin/lldpd -d -r -u /run/lldpd.socket >$R/test-lldpd.log 2>&1 &
    LLDPD=$!
    LLDP_FROM=$(uptime_s)
}

# Neighbours as lldpcli sees them (key=value lines, lldp.IF.KEY=VALUE).
lldp_neighbours() {
    in_tools /usr/sbin/lldpcli -u /run/lldpd.socket -f keyvalue show neighbors 2>/dev/null
}

# Listens until every interface with carrier has a neighbour, or the time is up.
finish_lldp() {
    while :; do
        lldp_neighbours >/tmp/lldp.kv
        waiting=
        for dir in /sys/class/net/*; do
            n=${dir##*/}
            [ "$n" = lo ] && continue
            rd "$dir/carrier"
            [ "$_v" = 1 ] || continue
            grep -q "^lldp\.$n\." /tmp/lldp.kv || waiting="$waiting $n"
        done
        [ -z "$waiting" ] && break
        [ $(($(uptime_s) - LLDP_FROM)) -ge "$LLDP_SECS" ] && break
        sleep 1
    done
    kill "$LLDPD" 2>/dev/null
    awk '
        {
            eq = index($0, "="); key = substr($0, 1, eq - 1); value = substr($0, eq + 1)
            n = split(key, part, "."); if (part[1] != "lldp" || n < 3) next
            i = part[2]; what = substr(key, length(part[1]) + length(i) + 3)
            seen[i] = 1
            if (what == "chassis.mac" || what == "chassis.local" || what == "chassis.ip") chassis[i] = value
            else if (what == "chassis.name") name[i] = value
            else if (what == "port.ifname" || what == "port.local" || what == "port.mac") port[i] = value
            else if (what == "port.descr") descr[i] = value
        }
        END {
            for (i in seen)
                printf "name=%s\tchassis_id=%s\tsystem_name=%s\tport_id=%s\tport_description=%s\n", i, chassis[i], name[i], port[i], descr[i]
        }' /tmp/lldp.kv >$R/lldp
    say "LLDP: $(wc -l <$R/lldp) neighbours after $(($(uptime_s) - LLDP_FROM)) s"
}

if mount_tools; then
    [ "${LLDP_SECS:-0}" -gt 0 ] && start_lldp
    for t in $(echo "${TESTS:-}" | tr ',' ' '); do
        LOGF=$R/test-$t.log
        : >"$LOGF"
        started=$(uptime_s)
        case $t in
        smartctl) test_smartctl ;;
        memtester) test_memtester ;;
        fio) test_fio ;;
        stress-ng) test_stress_ng ;;
        *) STATUS=failed DETAIL="no such test in this image" ;;
        esac
        result "$t" "$STATUS" $(($(uptime_s) - started)) "$DETAIL"
    done
    [ "${LLDP_SECS:-0}" -gt 0 ] && finish_lldp
    for m in run tmp sys proc dev ""; do umount "$TOOLS/$m" 2>/dev/null; done
fi
