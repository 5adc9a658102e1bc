#!/usr/bin/env bash
# Records plugins/evictions/golden/snapshots.jsonl from a real redis-server:
#   baseline    maxmemory 2mb, allkeys-lru, nothing evicted yet
#   evicting    3 rounds of 3000 SETs of 1 KB values, one poll after each:
#               evicted_keys grows at every poll
#   quiet       no writes, maxmemory raised to 4mb (at the limit, the
#               polls' own connections would evict a few more keys): 3 polls
#               (quiet_polls 2)
#   resetstat   CONFIG RESETSTAT: evicted_keys back to 0, 2 polls
#   rejecting   maxclients 4, 12 connections opened at once then closed,
#               twice, one poll after each: rejected_connections grows
#   quiet       3 polls
#   restart     the server restarted (new run_id, counters 0), 2 polls
# and prints what evictions makes of it (--save: into
# plugins/evictions/golden/expected.jsonl). Settings:
# plugins/evictions/golden/evictions.toml.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../tests/golden/redis.sh
source "$here/../../../tests/golden/redis.sh"

# write ROUND: 3000 SETs of 1 KB values through one pipeline.
write() {
    python3 - "$1" <<'PY' | redis-cli -p "$port" --pipe >/dev/null
import sys
value = "x" * 1024
for n in range(3000):
    key = f"k:{sys.argv[1]}:{n}"
    sys.stdout.write(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(value)}\r\n{value}\r\n")
PY
}

start_redis --maxmemory 2mb --maxmemory-policy allkeys-lru
record_probes evictions 2
for round in 1 2 3; do
    write "$round"
    record_probes evictions 1
done
cli config set maxmemory 4mb
record_probes evictions 3
cli config resetstat
record_probes evictions 2
cli config set maxclients 4
for round in 1 2; do
    crowd
    record_probes evictions 1
done
record_probes evictions 3
stop_redis
start_redis --maxmemory 4mb --maxmemory-policy allkeys-lru
record_probes evictions 2
golden_finish evictions "${1:-}"
