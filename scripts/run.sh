#!/usr/bin/env bash
# Runs edgemetal on this machine: a region with its embedded defaults (SQLite
# under data/region, embedded MQTT broker) and one rack-edge connected to it.
# Prints the API address and an API key; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${EDGEMETAL_DATA:-$PWD/data}"
API="${EDGEMETAL_HTTP_LISTEN:-127.0.0.1:5240}"
BROKER="${EDGEMETAL_EMBEDDED_BROKER_LISTEN:-127.0.0.1:8883}"
RACK_STATUS="${EDGEMETAL_RACK_STATUS_LISTEN:-127.0.0.1:5250}"
# The local rack serves no DHCP (that needs a site network); its HTTP boot
# server and DNS listen on loopback so both can be tried.
RACK_HTTP="${EDGEMETAL_RACK_HTTP_BOOT_LISTEN:-127.0.0.1:5248}"
RACK_DNS="${EDGEMETAL_RACK_DNS_LISTEN:-127.0.0.1:5353}"

# Same target selection as scripts/test.sh, so the two share one build.
cargo build --workspace --all-targets --quiet
BIN="$PWD/target/debug"

export EDGEMETAL_DATA_DIR="$DATA/region"
export EDGEMETAL_HTTP_LISTEN="$API"
export EDGEMETAL_EMBEDDED_BROKER_LISTEN="$BROKER"
mkdir -p "$DATA"
KEY_FILE="$DATA/admin-api-key"
if [[ ! -s "$KEY_FILE" ]]; then
    (umask 077 && "$BIN/edgemetal-region" --init api-key create --name admin >"$KEY_FILE")
fi
KEY="$(cat "$KEY_FILE")"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/edgemetal-region" serve 2>"$DATA/region.log" &
pids+=($!)
for _ in $(seq 1 200); do
    # bash's /dev/tcp: no curl needed on a fresh machine.
    (exec 3<>"/dev/tcp/${API%:*}/${API##*:}") 2>/dev/null && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$DATA/region.log"; exit 1; }
    sleep 0.05
done

# First start: the rack enrols with a single-use token (TLS broker, sealed link).
rack_args=()
if [[ ! -s "$DATA/rack/identity.json" ]]; then
    TOKEN="$("$BIN/edgemetal-region" enrolment-token create --rack-name local-rack --expires-in-secs 600)"
    rack_args=(--region-url "http://$API" --enrolment-token "$TOKEN")
fi
"$BIN/edgemetal-rack" run --state-dir "$DATA/rack" --status-listen "$RACK_STATUS" \
    --http-boot-listen "$RACK_HTTP" --dns-listen "$RACK_DNS" \
    "${rack_args[@]}" 2>"$DATA/rack.log" &
pids+=($!)

cat <<BANNER

edgemetal is running.
  API:       http://$API/api/v1   (OpenAPI: /api/v1/openapi.json, metrics: /metrics)
  API key:   $KEY
  rack:      status http://$RACK_STATUS/status, boot files http://$RACK_HTTP/boot/,
             DNS $RACK_DNS (dig @${RACK_DNS%:*} -p ${RACK_DNS##*:} <name>)
  logs:      $DATA/region.log, $DATA/rack.log

Try:
  export KEY=$KEY
  curl -s -H "Authorization: Bearer \$KEY" http://$API/api/v1/racks

Ctrl-C stops both.
BANNER
wait -n
