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
