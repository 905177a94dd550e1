#!/usr/bin/env bash
# DNS benchmark: dnsperf against edgemetal's server
# (rack-edge/examples/dns_serve.rs), unbound and dnsmasq, configured alike
# on loopback in the same run, for two workloads:
#
#   cached   forwarded names, all answered by a local upstream (a dnsmasq
#            answering from a hosts file, TTL 3600) and warmed up first, so
#            every measured query is a cache hit;
#   auth     names of a zone the server holds itself (edgemetal: a pushed
#            zone; unbound: local-data; dnsmasq: host records).
#
# Prints queries/s per server and workload (best of BENCH_RUNS runs, the
# servers interleaved so that noise from other load hits all alike) and our
# ratio to each peer, plus lost queries in the best run.
#
# BENCH_NAMES (1000 names per workload), BENCH_SECS (10 per measurement),
# BENCH_RUNS (3),
# BENCH_CLIENTS (dnsperf -c, 8), BENCH_THREADS (server threads for
# edgemetal's UDP workers and unbound's num-threads; default: nproc),
# BENCH_PORT (17300: this port and the next three), PROFILE=release
# (default) | debug, BENCH_SERVER_BIN=path to use an already built dns_serve.
# Not part of CI. As root, installs dnsperf, unbound and dnsmasq if missing;
# every server runs as a foreground process of this script on 127.0.0.1
# with its own config (never as a system service).
set -euo pipefail
cd "$(dirname "$0")/.."

names=${BENCH_NAMES:-1000}
secs=${BENCH_SECS:-10}
runs=${BENCH_RUNS:-3}
clients=${BENCH_CLIENTS:-8}
threads=${BENCH_THREADS:-$(nproc)}
port=${BENCH_PORT:-17300}
profile=${PROFILE:-release}
profile_flag=()
[[ "$profile" == release ]] && profile_flag=(--release)

if [[ -n "${BENCH_SERVER_BIN:-}" ]]; then
    ours_bin=$BENCH_SERVER_BIN
else
    cargo build "${profile_flag[@]}" -p edgemetal-rack --example dns_serve
    ours_bin="target/$profile/examples/dns_serve"
fi

missing=()
for tool in dnsperf:dnsperf unbound:unbound dnsmasq:dnsmasq dig:bind9-dnsutils; do
    command -v "${tool%%:*}" >/dev/null || [[ -x "/usr/sbin/${tool%%:*}" ]] || missing+=("${tool#*:}")
done
if ((${#missing[@]})) && [[ $EUID -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v dnsperf >/dev/null || { echo "dnsperf is missing (apt-get install dnsperf)" >&2; exit 1; }
unbound_bin=$(command -v unbound || echo /usr/sbin/unbound)
dnsmasq_bin=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"

upstream_port=$port
declare -A server_port=([edgemetal]=$((port + 1)) [unbound]=$((port + 2)) [dnsmasq]=$((port + 3)))
servers=()

# The data: forwarded names live in the upstream, zone names in each server.
addr() { echo "198.18.$(($1 / 250)).$(($1 % 250 + 1))"; }
for n in $(seq "$names"); do
    echo "$(addr "$n") name$n.upstream.bench" >>"$work/upstream.hosts"
    echo "name$n.upstream.bench A" >>"$work/cached.queries"
    echo "host$n.site.bench A" >>"$work/auth.queries"
done

"$dnsmasq_bin" --no-daemon --no-resolv --no-hosts --conf-file=/dev/null --pid-file= \
    --log-facility="$work/upstream.log" --listen-address=127.0.0.1 --bind-interfaces \
    --port="$upstream_port" --addn-hosts="$work/upstream.hosts" --local-ttl=3600 \
    --cache-size=0 &
pids+=($!)

# edgemetal: the snapshot's DNS config as JSON.
{
    printf '{"zones":[{"name":"site.bench","serial":1,"negative_ttl":60,"records":['
    for n in $(seq "$names"); do
        ((n > 1)) && printf ','
        printf '{"name":"host%d.site.bench","ttl":3600,"data":{"A":"%s"}}' "$n" "$(addr "$n")"
    done
    printf ']}],"forwarders":["127.0.0.1:%s"],"allowed_networks":[]}' "$upstream_port"
} >"$work/edgemetal.json"
"$ours_bin" --config "$work/edgemetal.json" --listen "127.0.0.1:${server_port[edgemetal]}" \
    --udp-workers "$threads" \
    --cache-file "$work/edgemetal-cache.json" >"$work/edgemetal.log" 2>&1 &
pids+=($!)

# unbound: forward everything to the upstream, the zone as local-data.
{
    cat <<EOF
server:
    interface: 127.0.0.1@${server_port[unbound]}
    port: ${server_port[unbound]}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$work"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: $threads
    so-reuseport: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    msg-cache-size: 64m
    rrset-cache-size: 64m
    local-zone: "site.bench." static
EOF
    for n in $(seq "$names"); do
        echo "    local-data: \"host$n.site.bench. 3600 IN A $(addr "$n")\""
    done
    cat <<EOF
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$upstream_port
EOF
} >"$work/unbound.conf"
"$unbound_bin" -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 &
pids+=($!)

# dnsmasq: forward to the upstream, the zone as host records.
for n in $(seq "$names"); do
    echo "$(addr "$n") host$n.site.bench" >>"$work/site.hosts"
done
"$dnsmasq_bin" --no-daemon --no-resolv --no-hosts --conf-file=/dev/null --pid-file= \
    --log-facility="$work/dnsmasq.log" --listen-address=127.0.0.1 --bind-interfaces \
    --port="${server_port[dnsmasq]}" --server="127.0.0.1#$upstream_port" \
    --addn-hosts="$work/site.hosts" --local=/site.bench/ --cache-size=10000 &
pids+=($!)

# Counts a server in once it answers a zone name.
ready() {
    local name=$1 p=$2
    for _ in $(seq 100); do
        if [[ "$(dig @127.0.0.1 -p "$p" host1.site.bench +short +time=1 +tries=1 2>/dev/null)" == "$(addr 1)" ]]; then
            servers+=("$name")
            return
        fi
        sleep 0.1
    done
    echo "$name did not start: skipped" >&2
    cat "$work/$name.log" >&2 2>/dev/null || true
}
for _ in $(seq 100); do
    [[ "$(dig @127.0.0.1 -p "$upstream_port" name1.upstream.bench +short +time=1 +tries=1 2>/dev/null)" == "$(addr 1)" ]] && break
    sleep 0.1
done
for name in edgemetal unbound dnsmasq; do ready "$name" "${server_port[$name]}"; done
[[ " ${servers[*]} " == *" edgemetal "* ]] || { echo "edgemetal did not start" >&2; exit 1; }

# One dnsperf run; prints "qps lost/noerror" (noerror: the share of
# answers that were NOERROR; anything else means the run measured errors).
perf() {
    local p=$1 file=$2 limit=$3 out
    out=$(dnsperf -s 127.0.0.1 -p "$p" -d "$file" -c "$clients" -l "$limit" -q 200 -t 2 2>&1)
    awk '/Queries per second:/ { qps = $4 } /Queries lost:/ { lost = $3 }
        /Response codes:/ { for (i = 1; i <= NF; i++) if ($i == "NOERROR") ok = $(i + 2) }
        END { gsub(/[(),]/, "", ok); printf "%.0f %s/%s\n", qps, lost, (ok == "" ? "0%" : ok) }' <<<"$out"
}

declare -A qps lost
for server in "${servers[@]}"; do
    # Warm-up: every forwarded name once through the cache.
    dnsperf -s 127.0.0.1 -p "${server_port[$server]}" -d "$work/cached.queries" -n 1 -c 4 -t 5 >/dev/null 2>&1
done
for _ in $(seq "$runs"); do
    for workload in cached auth; do
        for server in "${servers[@]}"; do
            read -r q l < <(perf "${server_port[$server]}" "$work/$workload.queries" "$secs")
            if ((q > ${qps[$workload,$server]:-0})); then
                qps[$workload,$server]=$q
                lost[$workload,$server]=$l
            fi
        done
    done
done

echo
echo "DNS over loopback UDP, $names names per workload, best of $runs runs of ${secs} s," \
    "dnsperf -c $clients, $(nproc) CPUs, $threads server threads (profile $profile)"
printf "%-8s" workload
for server in "${servers[@]}"; do printf "%14s" "$server qps"; done
for server in "${servers[@]:1}"; do printf "%18s" "ours/$server"; done
echo
for workload in cached auth; do
    printf "%-8s" "$workload"
    for server in "${servers[@]}"; do printf "%14s" "${qps[$workload,$server]}"; done
    for server in "${servers[@]:1}"; do
        printf "%18s" "$(awk -v a="${qps[$workload,edgemetal]}" -v b="${qps[$workload,$server]}" \
            'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }')"
    done
    echo
done
printf "lost/noerror:"
for workload in cached auth; do
    for server in "${servers[@]}"; do printf " %s/%s=%s" "$workload" "$server" "${lost[$workload,$server]}"; done
done
echo
