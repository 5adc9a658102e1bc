#!/usr/bin/env bash
# Records plugins/rules/golden/snapshots.jsonl from a real redis-server:
#   baseline    2 polls, no rule holds
#   memory      maxmemory just over used_memory (ratio over 0.9) for 3
#               polls, then 1gb: memory_critical entered at the 2nd, left
#   rejected    maxclients 4, 12 connections opened at once then closed:
#               connections_rejected entered (delta 8), left the poll after
#   errors      600 unknown commands in one pipeline: error_replies entered
#               (rate over 1000/s), left the poll after
#   replica     a replica attached (1 poll), then shut down:
#               replicas_disconnected entered (delta -1), left the poll after
#   no backup   waits until the last save (the server's start) is over 8 s
#               old: missing_backup entered
#   bgsave      dir set to a directory then removed, BGSAVE fails:
#               bgsave_broken entered (err); directory back, BGSAVE succeeds:
#               bgsave_broken and missing_backup left
# and prints what rules makes of it (--save: into
# plugins/rules/golden/expected.jsonl). Settings:
# plugins/rules/golden/rules.toml.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../tests/golden/redis.sh
source "$here/../../../tests/golden/redis.sh"
replica_port="$(free_port)"
trap 'redis-cli -p "$replica_port" shutdown nosave >/dev/null 2>&1 || true; stop_redis; rm -rf "$tmp"' EXIT
# info_is FIELD VALUE [PORT]: waits (up to 10 s) until INFO says FIELD:VALUE.
info_is() {
    for _ in $(seq 200); do
        redis-cli -p "${3:-$port}" info | tr -d '\r' | grep -qx "$1:$2" && return 0
        sleep 0.05
    done
    echo "$0: $1 never became $2" >&2
    exit 1
}

start_redis --enable-protected-configs yes --repl-diskless-sync-delay 0
started="$(date +%s)"
record_probes rules 2

used="$(info_field memory used_memory)"
cli config set maxmemory "$((used + 32 * 1024))"
record_probes rules 3
cli config set maxmemory 1gb
record_probes rules 1

cli config set maxclients 4
crowd
record_probes rules 1
cli config set maxclients 10000
record_probes rules 1

for _ in $(seq 600); do printf 'NOSUCHCOMMAND\r\n'; done | redis-cli -p "$port" --pipe >/dev/null 2>&1 || true
record_probes rules 1
record_probes rules 1

mkdir "$tmp/replica"
redis-server --port "$replica_port" --bind 127.0.0.1 --dir "$tmp/replica" --save '' --appendonly no \
    --daemonize yes --logfile "$tmp/replica/redis.log" --replicaof 127.0.0.1 "$port"
info_is connected_slaves 1
record_probes rules 1
redis-cli -p "$replica_port" shutdown nosave >/dev/null 2>&1 || true
info_is connected_slaves 0
record_probes rules 2

while [ "$(date +%s)" -le "$((started + 9))" ]; do sleep 0.2; done
record_probes rules 1

mkdir "$tmp/data"
cli config set dir "$tmp/data"
rmdir "$tmp/data"
cli bgsave
info_is rdb_last_bgsave_status err
record_probes rules 2
mkdir "$tmp/data"
cli config set dir "$tmp/data"
cli bgsave
info_is rdb_last_bgsave_status ok
record_probes rules 1
golden_finish rules "${1:-}"
