# Sourced by each watcher's golden record script (plugins/NAME/golden/
# record.sh), which sets `here` (its golden folder) first: a throwaway
# redis-server on a free port in a temp dir. Sets repo, lookout (the release
# binary, or $LOOKOUT), tmp, port and url, and an EXIT trap that stops the
# server and removes tmp (a script with more to clean up sets its own);
# start_redis [ARGS...] starts (or restarts) it with extra server ARGS,
# stop_redis stops it.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
lookout="${LOOKOUT:-$repo/target/release/lookout}"
[ -x "$lookout" ] || { echo "${0##*/}: $lookout is missing; run \`make build\`" >&2; exit 1; }

# free_port: a free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

tmp="$(mktemp -d)"
port="$(free_port)"
url="redis://127.0.0.1:$port"
trap 'stop_redis; rm -rf "$tmp"' EXIT

start_redis() {
    redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
        --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" "$@"
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "${0##*/}: redis-server did not start on port $port" >&2
    exit 1
}

# stop_redis [PORT]: stops the server (or the one on PORT) and waits until
# it no longer answers.
stop_redis() {
    local p="${1:-$port}"
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 100); do
        redis-cli -p "$p" ping >/dev/null 2>&1 || return 0
        sleep 0.05
    done
}

# cli ARGS...: runs a command on the server, its reply discarded.
cli() { redis-cli -p "$port" "$@" >/dev/null; }

# info_field SECTION NAME [PORT]: NAME from INFO SECTION of the server (or
# of the one on PORT).
info_field() { redis-cli -p "${3:-$port}" info "$1" | tr -d '\r' | sed -n "s/^$2://p"; }

# wait_until WHAT COMMAND...: up to $wait_seconds (default 10) s for COMMAND
# to succeed, else exits naming WHAT.
wait_until() {
    local what="$1"; shift
    for _ in $(seq $(( ${wait_seconds:-10} * 20 ))); do
        "$@" && return 0
        sleep 0.05
    done
    echo "$0: timed out waiting for $what" >&2
    exit 1
}

# crowd: 12 connections opened together (each sends PING and waits for
# its answer), then all closed; those over maxclients are rejected.
crowd() {
    python3 - "$port" <<'PY'
import socket, sys
socks = []
for _ in range(12):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"PING\r\n")
    s.recv(128)
    socks.append(s)
for s in socks:
    s.close()
PY
}

# record_probes NAME POLLS: appends POLLS snapshots (0.2 s apart) to
# $tmp/NAME.snapshots.jsonl with the probes watcher NAME declares and only
# the INFO it reads, its settings from $here/NAME.toml.
record_probes() {
    local w="$1" polls="$2" config="$tmp/lookout-record.toml"
    { echo "[watchers.$w]"; [ -f "$here/$w.toml" ] && cat "$here/$w.toml"; } >"$config"
    "$lookout" record --redis "$url" --polls "$polls" --every 0.2 --redact \
        --watcher "$repo/plugins/$w.wasm" --only-declared --lookout-config "$config" \
        --cache-dir "$repo/target/golden-cache" >>"$tmp/$w.snapshots.jsonl"
}

# golden_finish NAME [--save]: prints what watcher NAME makes of the
# recording (its settings from $here/NAME.toml); with --save, copies the
# recording to $here/snapshots.jsonl and writes those events to
# $here/expected.jsonl (review them first).
golden_finish() {
    local w="$1" config=()
    local snapshots="$tmp/$w.snapshots.jsonl" shown="${here#"$repo"/}"
    echo "recorded $(wc -l <"$snapshots") snapshots" >&2
    [ -f "$here/$w.toml" ] && config=(--config "$here/$w.toml")
    if [ "${2:-}" = --save ]; then
        cp "$snapshots" "$here/snapshots.jsonl"
        "$lookout" test "$repo/plugins/$w.wasm" --snapshots "$here/snapshots.jsonl" "${config[@]}" \
            --cache-dir "$repo/target/golden-cache" >"$here/expected.jsonl"
        echo "saved $shown/snapshots.jsonl and $shown/expected.jsonl" >&2
    else
        "$lookout" test "$repo/plugins/$w.wasm" --snapshots "$snapshots" "${config[@]}" \
            --cache-dir "$repo/target/golden-cache"
    fi
}
