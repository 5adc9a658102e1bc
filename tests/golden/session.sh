# Sourced after redis.sh by the golden record scripts of the first bundled
# watchers (plugins/slowlog, client-delta and memory-pressure/golden/
# record.sh): record_session NAME drives a real redis-server through every
# condition those watchers report and records it into
# $tmp/NAME.snapshots.jsonl, for golden_finish NAME.
#
# Phases, each recorded with `lookout record --redact` (the whole INFO):
#   baseline        2 snapshots, nothing happening
#   slow commands   DEBUG SLEEP 0.02 twice (slowlog-log-slower-than 10000)
#   client surge    20 extra connections, then closed again
#   memory pressure maxmemory set below used_memory_rss, held, then raised
#   restart         SHUTDOWN NOSAVE and a new redis-server on the same port
#                   (new run_id, SLOWLOG ids start again at 0), one slow command
#
# Needs redis-server, redis-cli, python3 and a built target/release/lookout.

record_session() {
    local out="$tmp/$1.snapshots.jsonl"
    local redis_args=(--enable-debug-command yes --slowlog-log-slower-than 10000 --maxmemory-policy noeviction)
    holder=""
    trap '[ -n "$holder" ] && kill "$holder" 2>/dev/null || true; stop_redis; rm -rf "$tmp"' EXIT
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

    local rss
    rss="$(info_field memory used_memory_rss)"
    cli config set maxmemory "$((rss / 2))"  # memory pressure: RSS at ~200% of maxmemory
    snap 4
    cli config set maxmemory 1gb             # and back
    snap 1

    stop_redis                               # restart: new run_id, SLOWLOG empty
    start_redis "${redis_args[@]}"
    cli debug sleep 0.02
    snap 2
}
