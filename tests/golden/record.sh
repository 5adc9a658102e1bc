#!/usr/bin/env bash
# Re-records tests/golden/snapshots.jsonl from a real redis-server driven
# through every condition the bundled watchers report, then prints what each
# watcher makes of it. Review those events before saving them as
# tests/golden/NAME.expected.jsonl (`tests/golden/record.sh --save` does).
#
# Phases, each recorded with `lookout record --redact`:
#   baseline        2 snapshots, nothing happening
#   slow commands   DEBUG SLEEP 0.02 twice (slowlog-log-slower-than 10000)
#   client surge    20 extra connections, then closed again
#   memory pressure maxmemory set below used_memory_rss, held, then raised
#   restart         SHUTDOWN NOSAVE and a new redis-server on the same port
#                   (new run_id, SLOWLOG ids start again at 0), one slow command
#
# Needs redis-server, redis-cli, python3 and a built target/release/lookout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=redis.sh
source "$here/redis.sh"
out="$tmp/snapshots.jsonl"
holder=""
redis_args=(--enable-debug-command yes --slowlog-log-slower-than 10000 --maxmemory-policy noeviction)

cleanup() {
    [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
    stop_redis
    rm -rf "$tmp"
}
trap cleanup EXIT

snap() { "$lookout" record --redis "$url" --polls "$1" --every 0.2 --redact >>"$out"; }

start_redis "${redis_args[@]}"
snap 2                                   # baseline

cli debug sleep 0.02                     # slow commands
cli debug sleep 0.02
snap 1

python3 - "$port" <<'EOF' &              # client surge: 20 idle connections
import socket, sys, time
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(20)]
print("open", flush=True)
time.sleep(60)
EOF
holder=$!
for _ in $(seq 100); do
    [ "$(info_field clients connected_clients)" -ge 21 ] && break
    sleep 0.05
done
snap 1
kill "$holder"; wait "$holder" 2>/dev/null || true; holder=""
for _ in $(seq 100); do
    [ "$(info_field clients connected_clients)" -le 1 ] && break
    sleep 0.05
done
snap 1

rss="$(info_field memory used_memory_rss)"
cli config set maxmemory "$((rss / 2))"  # memory pressure: RSS at ~200% of maxmemory
snap 4
cli config set maxmemory 1gb             # and back
snap 1

stop_redis                               # restart: new run_id, SLOWLOG empty
start_redis "${redis_args[@]}"
cli debug sleep 0.02
snap 2

cp "$out" "$here/snapshots.jsonl"
echo "recorded $(wc -l <"$here/snapshots.jsonl") snapshots into tests/golden/snapshots.jsonl" >&2
for w in slowlog client-delta memory-pressure; do
    config=()
    [ -f "$here/$w.toml" ] && config=(--config "$here/$w.toml")
    if [ "${1:-}" = --save ]; then
        "$lookout" test "$repo/plugins/$w.wasm" --snapshots "$here/snapshots.jsonl" "${config[@]}" \
            >"$here/$w.expected.jsonl"
        echo "saved tests/golden/$w.expected.jsonl" >&2
    else
        echo "== $w" >&2
        "$lookout" test "$repo/plugins/$w.wasm" --snapshots "$here/snapshots.jsonl" "${config[@]}"
    fi
done
