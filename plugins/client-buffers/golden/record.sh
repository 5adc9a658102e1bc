#!/usr/bin/env bash
# Records plugins/client-buffers/golden/snapshots.jsonl from a real
# redis-server:
#   baseline      no client over a limit
#   stalled       a subscriber (socket receive buffer 4 KiB) stops reading
#                 while 64 KiB messages are published to its channel, until
#                 its output buffer holds over 2 MiB: over max_omem_pubsub
#                 (1 MiB) for 3 polls (for_polls 2)
#   drained       it reads everything: back under
#   gone          it stalls again, goes over, and is killed
#   query buffer  a client sends 3 MiB of a 5 MiB SET and waits: its query
#                 buffer is over max_qbuf (2 MiB) and its memory over
#                 max_tot_mem (4 MiB); then it is killed
# and prints what client-buffers makes of it (--save: into
# plugins/client-buffers/golden/expected.jsonl). Settings:
# plugins/client-buffers/golden/client-buffers.toml.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../tests/golden/redis.sh
source "$here/../../../tests/golden/redis.sh"

# clients.py subscribe|publish N|half-set PORT: a subscriber to `news` that
# reads only on SIGUSR1; N PUBLISH news of 64 KiB; a SET whose value never
# ends.
cat >"$tmp/clients.py" <<'PY'
import signal, socket, sys
what, port = sys.argv[1], int(sys.argv[-1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
if what == "subscribe":
    s.sendall(b"SUBSCRIBE news\r\n")
    s.recv(4096)
    def drain(*_):
        s.settimeout(0.5)
        try:
            while s.recv(1 << 20):
                pass
        except socket.timeout:
            pass
    signal.signal(signal.SIGUSR1, drain)
    while True:
        signal.pause()
elif what == "publish":
    n = int(sys.argv[2])
    s.sendall((b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$65536\r\n" + b"x" * 65536 + b"\r\n") * n)
    got = b""
    while got.count(b"\r\n") < n:
        got += s.recv(4096)
else:
    s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5242880\r\n" + b"x" * (3 << 20))
    signal.pause()
PY

trap 'kill $(jobs -p) 2>/dev/null || true; stop_redis; rm -rf "$tmp"' EXIT
clients() { python3 "$tmp/clients.py" "$@" "$port" >/dev/null; }
# field_of TYPE FIELD: the largest FIELD of the clients of TYPE (normal,
# pubsub) in CLIENT LIST, empty when there is none.
field_of() {
    redis-cli -p "$port" client list type "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | sort -n | tail -1
}
subscribers() { redis-cli -p "$port" pubsub numsub news | tail -1; }
subscribed() { [ "$(subscribers)" = 1 ]; }
unsubscribed() { [ "$(subscribers)" = 0 ]; }
drained() { [ "$(field_of pubsub omem)" = 0 ]; }
half_sent() { [ "$(field_of normal qbuf)" -gt $((2 << 20)) ]; }
half_gone() { [ "$(field_of normal qbuf)" -lt $((2 << 20)) ]; }
# stall: publishes until the subscriber's output buffer holds over 2 MiB.
stall() {
    for _ in $(seq 200); do
        [ "$(field_of pubsub omem)" -gt $((2 << 20)) ] && return 0
        clients publish 8
    done
    echo "$0: the subscriber's output buffer did not grow" >&2
    exit 1
}

start_redis
record_probes client-buffers 1
python3 "$tmp/clients.py" subscribe "$port" &
sub=$!
wait_until "the subscriber" subscribed
stall
record_probes client-buffers 3
kill -USR1 "$sub"
wait_until "the subscriber to drain" drained
record_probes client-buffers 2
stall
record_probes client-buffers 2
kill "$sub"
wait_until "the subscriber to go" unsubscribed
record_probes client-buffers 1
python3 "$tmp/clients.py" half-set "$port" &
half=$!
wait_until "the half sent SET" half_sent
record_probes client-buffers 2
kill "$half"
wait_until "the half sent SET to go" half_gone
record_probes client-buffers 1
golden_finish client-buffers "${1:-}"
