#!/usr/bin/env bash
# Records plugins/replication/golden/snapshots.jsonl from one real
# redis-server R, with a second one M as its master and later its replica:
#   baseline     R a replica of M, link up
#   link down    M killed (SIGKILL): R's master_link_status down, 2 polls
#   link up      M restarted, R synced again
#   failover     REPLICAOF NO ONE on R: role change, R a master with 0
#                replicas (below min_replicas 1)
#   replica      M made a replica of R: 1 connected replica
#   behind       M paused (DEBUG SLEEP) while 16 KiB are written to R: M's
#                acknowledged offset over 4 KiB behind, then caught up
#   drop         M shut down: connected replicas 1 -> 0, below min_replicas
#   back         M a replica of R again: 1 connected replica
# and prints what replication makes of it (--save: into
# plugins/replication/golden/expected.jsonl). Settings:
# plugins/replication/golden/replication.toml. Only R is recorded.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../tests/golden/redis.sh
source "$here/../../../tests/golden/redis.sh"

# M, the other server: its own port, directory and pidfile under $tmp.
mport="$(free_port)"
mdir="$tmp/m"
mkdir -p "$mdir"
start_m() {
    redis-server --port "$mport" --bind 127.0.0.1 --dir "$mdir" --save '' --appendonly no \
        --daemonize yes --pidfile "$mdir/redis.pid" --logfile "$mdir/redis.log" \
        --enable-debug-command yes "$@"
    wait_until "M up" mcli_ok ping
}
stop_m() { stop_redis "$mport"; }
kill_m() {
    local pid
    pid="$(cat "$mdir/redis.pid")"
    kill -9 "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
}
trap 'stop_m; stop_redis; rm -rf "$tmp"' EXIT

mcli() { redis-cli -p "$mport" "$@" >/dev/null; }
mcli_ok() { redis-cli -p "$mport" "$@" >/dev/null 2>&1; }
# field NAME: NAME from INFO replication of R.
field() { info_field replication "$1"; }
link_is() { [ "$(field master_link_status)" = "$1" ]; }
r_replicas_are() { [ "$(field connected_slaves)" = "$1" ]; }
# M's acknowledged offset, from R's slave0 line, equals R's offset.
m_caught_up() {
    local line offset
    line="$(field slave0)"
    offset="$(sed -n 's/.*offset=\([0-9]*\).*/\1/p' <<<"$line")"
    [[ "$line" == *state=online* ]] && [ "$offset" = "$(field master_repl_offset)" ]
}

start_m
start_redis --replicaof 127.0.0.1 "$mport"
wait_until "link up" link_is up
record_probes replication 2

kill_m
wait_until "link down" link_is down
record_probes replication 2

start_m
wait_until "link up again" link_is up
record_probes replication 1

cli replicaof no one
record_probes replication 1

mcli replicaof 127.0.0.1 "$port"
wait_until "M attached" m_caught_up
record_probes replication 1

# M asleep cannot acknowledge what R sends it.
redis-cli -p "$mport" debug sleep 1.5 >/dev/null &
sleeper=$!
sleep 0.2
cli set big "$(head -c 16384 /dev/zero | tr '\0' x)"
record_probes replication 1
wait "$sleeper"
wait_until "M caught up" m_caught_up
record_probes replication 1

stop_m
wait_until "M gone" r_replicas_are 0
record_probes replication 2

start_m --replicaof 127.0.0.1 "$port"
wait_until "M back" m_caught_up
record_probes replication 1
golden_finish replication "${1:-}"
