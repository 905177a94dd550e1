#!/usr/bin/env bash
# HTTP boot benchmark: one file (64 MB by default) over loopback from the
# rack's HTTP boot server (rack-edge/examples/http_boot_serve.rs) and from
# nginx serving the same file, fetched with curl; prints MB/s (10^6 bytes)
# for each and the ratio. Every fetch is checked byte for byte.
#
# BENCH_MB (64), BENCH_RUNS (5, the best run counts), BENCH_PORT (16950 and
# the next). Not part of CI. As root, installs nginx-light if nginx is missing
# (run as a foreground process with its own config, never as a service).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

mb=${BENCH_MB:-64}
runs=${BENCH_RUNS:-5}
port=${BENCH_PORT:-16950}

cargo build --release -p edgemetal-rack --example http_boot_serve
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
chmod -R a+rX "$work/www"

target/release/examples/http_boot_serve "$work/state" "127.0.0.1:$port" &
pids+=($!)
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 64; }
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
for p in $port $((port + 1)); do
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

ours=$(best "http://127.0.0.1:$port/boot/resources/$sha")
theirs=$(best "http://127.0.0.1:$((port + 1))/boot/resources/$sha")
echo "HTTP ${mb} MB over loopback (curl, best of $runs):"
echo "  edgemetal  $ours MB/s"
echo "  nginx      $theirs MB/s"
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "  ratio      %.2f x nginx\n", a / b }'
