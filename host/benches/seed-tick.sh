#!/usr/bin/env bash
# One tick of log-sidecar-redis, the Bash sidecar Lookout replaces, as the
# bench's anchor: PING, INFO, SLOWLOG GET 10, python3 to parse both and build
# v0.1 envelopes, then PUBLISH to logs.redis.<level> and XADD to
# logs:stream:redis (MAXLEN ~ 10000) per event.
#
# The state the sidecar keeps in memory between ticks comes in through the
# environment: LAST_SLOWLOG_ID (default -1) and LAST_CLIENTS (empty on the
# first tick: no client delta yet). REDIS_URL names the server, PYTHON the
# interpreter (default python3).
set -euo pipefail

url=${REDIS_URL:-redis://127.0.0.1:6379}
cli() { redis-cli -u "$url" "$@"; }

[ "$(cli PING)" = PONG ] || { echo "redis down: $url" >&2; exit 1; }
info=$(cli INFO)
slowlog=$(cli --json SLOWLOG GET 10)

events=$(INFO=$info SLOWLOG=$slowlog "${PYTHON:-python3}" - <<'PY'
import json, os, socket, time

info = {}
for line in os.environ["INFO"].splitlines():
    if ":" in line and not line.startswith("#"):
        key, value = line.split(":", 1)
        info[key] = value.strip()
entries = json.loads(os.environ["SLOWLOG"] or "[]")
last_id = int(os.environ.get("LAST_SLOWLOG_ID") or -1)
last_clients = os.environ.get("LAST_CLIENTS", "")
host = socket.gethostname()


def emit(level, target, msg, **fields):
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    envelope = {
        "v": 1,
        "ts": "%s.%03dZ" % (ts, int(now * 1000) % 1000),
        "service": "redis",
        "host": host,
        "level": level,
        "pid": os.getppid(),
        "target": target,
        "msg": msg,
        "fields": fields,
    }
    print(level + "\t" + json.dumps(envelope, separators=(",", ":")))


for entry in reversed(entries):
    entry_id, started_at, duration_us, args = entry[0], entry[1], entry[2], entry[3]
    if entry_id > last_id:
        emit("warn", "slowlog", "slow command %s took %dus" % (args[0], duration_us),
             id=entry_id, started_at=started_at, duration_us=duration_us,
             args=" ".join(args), client_addr=entry[4], client_name=entry[5])
clients = int(info.get("connected_clients", "0"))
if last_clients and abs(clients - int(last_clients)) > 5:
    emit("info", "client-delta", "connected clients %s -> %d" % (last_clients, clients),
         previous=int(last_clients), current=clients)
rss, cap = int(info.get("used_memory_rss", "0")), int(info.get("maxmemory", "0"))
if cap and rss > 0.9 * cap:
    emit("warn", "memory-pressure", "used_memory_rss above 90% of maxmemory",
         used_memory_rss=rss, maxmemory=cap)
PY
)

while IFS=$'\t' read -r level envelope; do
    [ -n "$envelope" ] || continue
    cli PUBLISH "logs.redis.$level" "$envelope" >/dev/null
    cli XADD logs:stream:redis MAXLEN '~' 10000 '*' envelope "$envelope" >/dev/null
done <<<"$events"
