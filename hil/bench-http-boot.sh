#!/usr/bin/env bash
# HTTP boot benchmark over loopback, the rack's HTTP boot server
# (rack-edge/examples/http_boot_serve.rs) side by side with nginx serving the
# same files; prints each figure and the ratio:
#   1. one large file (64 MB by default) fetched with curl: MB/s (10^6 bytes),
#      every fetch checked byte for byte;
#   2. a 1 KiB file (an iPXE script's size) with wrk, 32 keep-alive
#      connections for BENCH_WRK_SECS: requests/s and p99 latency;
#   3. a boot storm: BENCH_STORM (200) clients at once each fetching the
#      large file: aggregate MB/s, every byte count checked.
#
# BENCH_MB (64), BENCH_RUNS (5, the best run counts), BENCH_PORT (16950 and
# the next). Not part of CI. As root, installs nginx-light and wrk if missing
# (nginx runs as a foreground process with its own config, never a service).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

mb=${BENCH_MB:-64}
runs=${BENCH_RUNS:-5}
port=${BENCH_PORT:-16950}
wrk_secs=${BENCH_WRK_SECS:-10}
storm=${BENCH_STORM:-200}

# The whole workspace, so features unify as in every other build (a -p
# build would rebuild the dependencies).
cargo build --release --workspace --examples
if ! command -v wrk >/dev/null && [[ $EUID -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk
fi
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]] && [[ $EUID -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d)
# nginx's worker runs as an unprivileged user: it must be able to read the files.
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

head -c $((mb * 1000 * 1000)) /dev/urandom >"$work/blob"
sha=$(sha256sum "$work/blob" | cut -d' ' -f1)
mkdir -p "$work/state/boot-cache" "$work/www/boot/resources"
chmod -R a+rX "$work"
cp "$work/blob" "$work/state/boot-cache/$sha"
cp "$work/blob" "$work/www/boot/resources/$sha"
head -c 1024 /dev/urandom >"$work/small"
small=$(sha256sum "$work/small" | cut -d' ' -f1)
cp "$work/small" "$work/state/boot-cache/$small"
cp "$work/small" "$work/www/boot/resources/$small"
chmod -R a+rX "$work/www"

target/release/examples/http_boot_serve "$work/state" "127.0.0.1:$port" &
pids+=($!)
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $work/tmp;
    proxy_temp_path $work/tmp;
    fastcgi_temp_path $work/tmp;
    uwsgi_temp_path $work/tmp;
    scgi_temp_path $work/tmp;
    server { listen 127.0.0.1:$((port + 1)); root $work/www; }
}
CONF
mkdir -p "$work/tmp"
"$nginx_bin" -c "$work/nginx.conf" &
pids+=($!)

best() { # URL -> best MB/s over $runs fetches
    local url=$1 best=0
    for _ in $(seq "$runs"); do
        local speed
        speed=$(curl -sS --fail -o "$work/out" -w '%{speed_download}' "$url")
        cmp -s "$work/out" "$work/blob" || { echo "corrupt download from $url" >&2; exit 1; }
        best=$(awk -v a="$best" -v b="$speed" 'BEGIN { print (b > a ? b : a) }')
    done
    awk -v b="$best" 'BEGIN { printf "%.0f", b / 1e6 }'
}
report() { # TITLE OURS THEIRS UNIT -> the two figures and their ratio
    echo "$1"
    echo "  edgemetal  $2 $4"
    echo "  nginx      $3 $4"
    awk -v a="$2" -v b="$3" 'BEGIN { printf "  ratio      %.2f x nginx\n", a / b }'
}
for p in $port $((port + 1)); do
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

ours=$(best "http://127.0.0.1:$port/boot/resources/$sha")
theirs=$(best "http://127.0.0.1:$((port + 1))/boot/resources/$sha")
report "HTTP ${mb} MB over loopback (curl, best of $runs):" "$ours" "$theirs" MB/s

small_file() { # URL -> "req/s p99"
    wrk -t 2 -c 32 -d "${wrk_secs}s" --latency "$1" >"$work/wrk.txt"
    local rps p99
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$work/wrk.txt")
    p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")
    echo "$rps $p99"
}
read -r ours_rps ours_p99 < <(small_file "http://127.0.0.1:$port/boot/resources/$small")
read -r theirs_rps theirs_p99 < <(small_file "http://127.0.0.1:$((port + 1))/boot/resources/$small")
report "HTTP 1 KiB file (wrk, 32 keep-alive connections, ${wrk_secs} s):" \
    "$ours_rps" "$theirs_rps" req/s
echo "  p99        edgemetal $ours_p99, nginx $theirs_p99"

boot_storm() { # URL -> aggregate MB/s of $storm concurrent fetches
    local start end bytes
    start=$(date +%s.%N)
    bytes=$(seq "$storm" | xargs -P "$storm" -I{} curl -sS --fail -o /dev/null -w '%{size_download}\n' "$1" |
        awk '{ s += $1 } END { printf "%.0f", s }')
    end=$(date +%s.%N)
    [[ $bytes -eq $((storm * mb * 1000 * 1000)) ]] || { echo "boot storm from $1: $bytes bytes" >&2; exit 1; }
    awk -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", b / (e - s) / 1e6 }'
}
ours_storm=$(boot_storm "http://127.0.0.1:$port/boot/resources/$sha")
theirs_storm=$(boot_storm "http://127.0.0.1:$((port + 1))/boot/resources/$sha")
report "Boot storm: $storm clients at once, each fetching the ${mb} MB file:" \
    "$ours_storm" "$theirs_storm" MB/s
