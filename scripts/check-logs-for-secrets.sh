#!/usr/bin/env bash
# After the test suite: no secret the tests handed out (API keys, enrolment
# tokens, rack broker passwords and link secrets, recorded by the harness in
# target/test-logs/secrets-used.txt) may appear in any log the suite produced.
set -euo pipefail
cd "$(dirname "$0")/.."
logs=target/test-logs
secrets="$logs/secrets-used.txt"
[[ -s "$secrets" ]] || { echo "no secrets recorded: did the end-to-end tests run?" >&2; exit 1; }
count=$(sort -u "$secrets" | wc -l)
# -F fixed strings, -f the list; print only the names of offending files, never the secret.
if grep -rlF -f "$secrets" --exclude=secrets-used.txt "$logs"; then
    echo "FAILED: the files above contain secrets the tests used" >&2
    exit 1
fi
echo "secrets check: $count secrets, none in $(find "$logs" -type f -name '*.log' | wc -l) log files"
