#!/usr/bin/env bash
# TFTP benchmark: one file (20 MB by default) over loopback from edgemetal's
# server (rack-edge/examples/tftp_serve.rs), tftpd-hpa and atftpd in the same
# run, fetched with curl (--tftp-blksize 1468) and atftp (blksize 1468,
# windowsize 64); prints MB/s (10^6 bytes) for each pair and our ratio to
# each peer. Every fetch is checked byte for byte.
#
# BENCH_MB (20), BENCH_RUNS (3, the best run counts), BENCH_PORT (16900:
# this port and the next two), PROFILE=release (default) | debug,
# BENCH_SERVER_BIN=path to use an already built tftp_serve.
# Not part of CI. Peers missing are skipped; as root the script installs
# atftpd and unpacks tftpd-hpa from its .deb into target/bench-peers
# (the two Debian packages conflict, so only one can be installed).
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${BENCH_MB:-20}
runs=${BENCH_RUNS:-3}
port=${BENCH_PORT:-16900}
profile=${PROFILE:-release}
profile_flag=()
[[ "$profile" == release ]] && profile_flag=(--release)

if [[ -n "${BENCH_SERVER_BIN:-}" ]]; then
    ours_bin=$BENCH_SERVER_BIN
else
    cargo build "${profile_flag[@]}" -p edgemetal-rack --example tftp_serve
    ours_bin="target/$profile/examples/tftp_serve"
fi

# Peers, as foreground processes (never as system services).
if [[ $EUID -eq 0 ]] && ! command -v atftpd >/dev/null && [[ ! -x /usr/sbin/atftpd ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends atftpd atftp curl
fi
atftpd_bin=$(command -v atftpd || echo /usr/sbin/atftpd)
# atftpd also installs an in.tftpd (itself): only tftp-hpa's counts.
tftpd_bin=$(command -v in.tftpd || echo /usr/sbin/in.tftpd)
if ! "$tftpd_bin" -V 2>&1 | grep -q tftp-hpa; then
    tftpd_bin=target/bench-peers/usr/sbin/in.tftpd
    if [[ ! -x "$tftpd_bin" && $EUID -eq 0 ]]; then
        mkdir -p target/bench-peers
        (cd target/bench-peers && apt-get download tftpd-hpa &&
            dpkg-deb -x tftpd-hpa_*.deb .) >/dev/null 2>&1 ||
            echo "cannot unpack tftpd-hpa" >&2
    fi
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

root="$work/root"
mkdir -p "$root"
head -c $((mb * 1000 * 1000)) /dev/urandom >"$root/bench.bin"
# tftpd-hpa and atftpd drop to user nobody: everything must be readable.
chmod 755 "$work" "$root"
chmod 644 "$root/bench.bin"
bytes=$(stat -c %s "$root/bench.bin")

declare -A server_port
servers=()

"$ours_bin" --root "$root" --listen "127.0.0.1:$port" >"$work/ours.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q "listening on" "$work/ours.log" && break; sleep 0.1; done
grep -q "listening on" "$work/ours.log" || { cat "$work/ours.log"; exit 1; }
servers+=(edgemetal)
server_port[edgemetal]=$port

# Counts a peer in only once its UDP port is open.
started() {
    local name=$1 peer_port=$2
    for _ in $(seq 30); do
        if ss -Huln "sport = :$peer_port" | grep -q .; then
            servers+=("$name")
            server_port[$name]=$peer_port
            return
        fi
        sleep 0.1
    done
    echo "$name did not start: skipped ($(cat "$work/$name.log" 2>/dev/null))" >&2
}

if [[ -x "$tftpd_bin" && $EUID -eq 0 ]]; then
    # -L foreground, -s chroot to the root, -u the unprivileged user.
    "$tftpd_bin" -L -s -u nobody -a "127.0.0.1:$((port + 1))" "$root" >"$work/tftpd-hpa.log" 2>&1 &
    pids+=($!)
    started tftpd-hpa $((port + 1))
else
    echo "tftpd-hpa not available (needs root to unpack and run): skipped" >&2
fi

if [[ -x "$atftpd_bin" && $EUID -eq 0 ]]; then
    "$atftpd_bin" --daemon --no-fork --port $((port + 2)) --bind-address 127.0.0.1 \
        --user nobody --group nogroup --logfile /dev/null "$root" >"$work/atftpd.log" 2>&1 &
    pids+=($!)
    started atftpd $((port + 2))
else
    echo "atftpd not available: skipped" >&2
fi

# One fetch; prints the seconds it took, or fails if the bytes differ.
fetch() {
    local client=$1 port=$2 out="$work/out" start end
    rm -f "$out"
    start=$(date +%s.%N)
    case $client in
    curl)
        timeout 120 curl -sS -o "$out" --tftp-blksize 1468 "tftp://127.0.0.1:$port/bench.bin"
        ;;
    atftp)
        timeout 120 atftp --option "blksize 1468" --option "windowsize 64" \
            -g -r bench.bin -l "$out" 127.0.0.1 "$port" >/dev/null 2>&1
        ;;
    esac
    end=$(date +%s.%N)
    cmp -s "$out" "$root/bench.bin" || return 1
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f\n", e - s }'
}

declare -A rate
for client in curl atftp; do
    for server in "${servers[@]}"; do
        best=""
        for _ in $(seq "$runs"); do
            if secs=$(fetch "$client" "${server_port[$server]}"); then
                best=$(awk -v a="$secs" -v b="${best:-$secs}" 'BEGIN { print (a < b ? a : b) }')
            fi
        done
        if [[ -n "$best" ]]; then
            rate[$client,$server]=$(awk -v b="$bytes" -v s="$best" 'BEGIN { printf "%.1f", b / s / 1e6 }')
        else
            rate[$client,$server]="failed"
        fi
    done
done

echo
echo "TFTP, ${mb} MB file over loopback, best of ${runs} (MB/s, profile ${profile})"
printf "%-8s" client
for server in "${servers[@]}"; do printf "%12s" "$server"; done
for server in "${servers[@]:1}"; do printf "%18s" "ours/$server"; done
echo
for client in curl atftp; do
    printf "%-8s" "$client"
    for server in "${servers[@]}"; do printf "%12s" "${rate[$client,$server]}"; done
    ours=${rate[$client,edgemetal]}
    for server in "${servers[@]:1}"; do
        ratio=$(awk -v a="$ours" -v b="${rate[$client,$server]}" \
            'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }')
        printf "%18s" "$ratio"
    done
    echo
done
echo "(tftpd-hpa grants no windowsize: atftp runs lock-step against it)"
