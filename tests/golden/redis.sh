# Sourced by the golden record.sh scripts: a throwaway redis-server on a free
# port in a temp dir. Sets tmp, port and url; start_redis [ARGS...] starts
# (or restarts) it with extra server ARGS, stop_redis stops it.
tmp="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
url="redis://127.0.0.1:$port"

start_redis() {
    redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
        --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" "$@"
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "record.sh: redis-server did not start on port $port" >&2
    exit 1
}

stop_redis() {
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 || return 0
        sleep 0.05
    done
}

# record_probes NAME POLLS: appends POLLS snapshots (0.2 s apart) to
# $tmp/NAME.snapshots.jsonl with the probes watcher NAME declares and only
# the INFO it reads, its settings from tests/golden/NAME.toml.
record_probes() {
    local w="$1" polls="$2" config="$tmp/lookout-record.toml"
    { echo "[watchers.$w]"; [ -f "$here/$w.toml" ] && cat "$here/$w.toml"; } >"$config"
    "$lookout" record --redis "$url" --polls "$polls" --every 0.2 --redact \
        --watcher "$repo/plugins/$w.wasm" --only-declared --lookout-config "$config" \
        --cache-dir "$repo/target/golden-cache" >>"$tmp/$w.snapshots.jsonl"
}

# golden_finish NAME [--save]: copies the recording to
# tests/golden/NAME.snapshots.jsonl and prints what watcher NAME makes of
# it, or with --save writes that to tests/golden/NAME.expected.jsonl.
golden_finish() {
    local w="$1" config=()
    cp "$tmp/$w.snapshots.jsonl" "$here/$w.snapshots.jsonl"
    echo "recorded $(wc -l <"$here/$w.snapshots.jsonl") snapshots into tests/golden/$w.snapshots.jsonl" >&2
    [ -f "$here/$w.toml" ] && config=(--config "$here/$w.toml")
    if [ "${2:-}" = --save ]; then
        "$lookout" test "$repo/plugins/$w.wasm" --snapshots "$here/$w.snapshots.jsonl" "${config[@]}" \
            --cache-dir "$repo/target/golden-cache" >"$here/$w.expected.jsonl"
        echo "saved tests/golden/$w.expected.jsonl" >&2
    else
        "$lookout" test "$repo/plugins/$w.wasm" --snapshots "$here/$w.snapshots.jsonl" "${config[@]}" \
            --cache-dir "$repo/target/golden-cache"
    fi
}
