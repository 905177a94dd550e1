#!/usr/bin/env bash
# Caching proxy benchmark: the rack's proxy (rack-edge/examples/proxy_serve.rs)
# against squid from Debian, configured alike on loopback in the same run, in
# front of one upstream (python's http.server). Both are warmed up first, so
# every measured request is a cache hit. Two workloads:
#
#   big     one 64 MB package fetched with curl through the proxy
#           (best of BENCH_RUNS; every fetch checked byte for byte): MB/s;
#   small   one 4 KB package requested over and over with ab (keep-alive,
#           BENCH_CONCURRENCY clients, BENCH_REQUESTS requests): req/s.
#
# Prints the figures per proxy and our ratio to squid.
#
# BENCH_MB (64), BENCH_RUNS (5), BENCH_REQUESTS (20000), BENCH_CONCURRENCY
# (16), BENCH_PORT (17400: this port and the next two), PROFILE=release
# (default) | debug. Not part of CI. As root, installs squid, apache2-utils
# (ab) and curl if missing; squid runs as a foreground process of this
# script with its own config and cache directory (never as a service).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

mb=${BENCH_MB:-64}
runs=${BENCH_RUNS:-5}
requests=${BENCH_REQUESTS:-20000}
concurrency=${BENCH_CONCURRENCY:-16}
port=${BENCH_PORT:-17400}
profile=${PROFILE:-release}
profile_flag=()
[[ "$profile" == release ]] && profile_flag=(--release)
upstream_port=$port ours_port=$((port + 1)) squid_port=$((port + 2))

cargo build "${profile_flag[@]}" -p edgemetal-rack --example proxy_serve
ours_bin="target/$profile/examples/proxy_serve"

missing=()
for tool in squid:squid ab:apache2-utils curl:curl python3:python3; do
    command -v "${tool%%:*}" >/dev/null || [[ -x "/usr/sbin/${tool%%:*}" ]] || missing+=("${tool#*:}")
done
if ((${#missing[@]})) && [[ $EUID -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
squid_bin=$(command -v squid || echo /usr/sbin/squid)
[[ -x "$squid_bin" ]] || { echo "squid is missing (apt-get install squid)" >&2; exit 1; }
command -v ab >/dev/null || { echo "ab is missing (apt-get install apache2-utils)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"

mkdir -p "$work/www/pool" "$work/ours" "$work/squid-cache"
head -c $((mb * 1000 * 1000)) /dev/urandom >"$work/www/pool/big_1.0_all.deb"
head -c 4096 /dev/urandom >"$work/www/pool/small_1.0_all.deb"
python3 -m http.server "$upstream_port" --bind 127.0.0.1 --directory "$work/www" \
    >"$work/upstream.log" 2>&1 &
pids+=($!)

"$ours_bin" "$work/ours" "127.0.0.1:$ours_port" >"$work/ours.log" 2>&1 &
pids+=($!)

# squid as alike as it gets: a disk cache big enough for the file, objects
# this size allowed (before cache_dir, which takes its limit from it),
# everything fresh (the files are immutable packages).
squid_user=$(id -un)
[[ $EUID -eq 0 ]] && squid_user=proxy && chown -R proxy "$work/squid-cache"
cat >"$work/squid.conf" <<CONF
http_port 127.0.0.1:$squid_port
http_access allow localhost
http_access deny all
cache_effective_user $squid_user
maximum_object_size 256 MB
cache_dir ufs $work/squid-cache 1024 16 256
cache_mem 64 MB
refresh_pattern . 1440 100% 43200
access_log none
cache_store_log none
cache_log $work/squid-cache.log
pid_filename $work/squid.pid
coredump_dir $work/squid-cache
shutdown_lifetime 0 seconds
CONF
chmod 644 "$work/squid.conf"
"$squid_bin" -z -N -f "$work/squid.conf" >/dev/null 2>&1 || true
"$squid_bin" -N -f "$work/squid.conf" >"$work/squid.out" 2>&1 &
pids+=($!)

ready() { # PROXY URL: waits until the proxy answers 200 for URL
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' -x "$1" "$2" || true) == 200 ]] && return 0
        sleep 0.1
    done
    echo "no answer from $1 for $2" >&2
    exit 1
}
big="http://127.0.0.1:$upstream_port/pool/big_1.0_all.deb"
small="http://127.0.0.1:$upstream_port/pool/small_1.0_all.deb"
ready "http://127.0.0.1:$ours_port" "$small"
ready "http://127.0.0.1:$squid_port" "$small"
# Warm-up: both caches hold both files after this.
for p in $ours_port $squid_port; do
    for url in "$big" "$small" "$big" "$small"; do
        curl -sS --fail -o /dev/null -x "http://127.0.0.1:$p" "$url"
    done
done

best() { # PROXY -> best MB/s over $runs fetches of the big file
    local proxy=$1 best=0
    for _ in $(seq "$runs"); do
        local speed
        speed=$(curl -sS --fail -x "$proxy" -o "$work/out" -w '%{speed_download}' "$big")
        cmp -s "$work/out" "$work/www/pool/big_1.0_all.deb" ||
            { echo "corrupt download through $proxy" >&2; exit 1; }
        best=$(awk -v a="$best" -v b="$speed" 'BEGIN { print (b > a ? b : a) }')
    done
    awk -v b="$best" 'BEGIN { printf "%.0f", b / 1e6 }'
}
rps() { # PROXY_PORT -> requests/s for the small file
    local out
    out=$(ab -q -k -n "$requests" -c "$concurrency" -X "127.0.0.1:$1" "$small")
    if ! grep -q '^Failed requests: *0$' <<<"$out"; then
        echo "failed requests through port $1:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk '/^Requests per second/ { printf "%.0f", $4 }' <<<"$out"
}

ours_mb=$(best "http://127.0.0.1:$ours_port")
squid_mb=$(best "http://127.0.0.1:$squid_port")
ours_rps=$(rps "$ours_port")
squid_rps=$(rps "$squid_port")
# 2 when each proxy fetched it once (the measured fetches were all hits).
upstream_big=$(grep -c 'GET /pool/big_1.0_all.deb' "$work/upstream.log" || true)

echo "Caching proxy, cache hits over loopback ($(nproc) cores):"
echo "  ${mb} MB package (curl, best of $runs)"
echo "    edgemetal  $ours_mb MB/s"
echo "    squid      $squid_mb MB/s"
awk -v a="$ours_mb" -v b="$squid_mb" 'BEGIN { printf "    ratio      %.2f x squid\n", a / b }'
echo "  4 KB package (ab -k, $concurrency clients, $requests requests)"
echo "    edgemetal  $ours_rps req/s"
echo "    squid      $squid_rps req/s"
awk -v a="$ours_rps" -v b="$squid_rps" 'BEGIN { printf "    ratio      %.2f x squid\n", a / b }'
echo "  upstream fetches of the big file (both proxies): $upstream_big"
