#!/usr/bin/env bash
# Re-records plugins/hit-ratio/golden/snapshots.jsonl from a real, throwaway
# redis-server, then prints what the hit-ratio watcher makes of it. Review
# those events before saving them as golden/expected.jsonl
# (`plugins/hit-ratio/golden/record.sh --save` does).
#
# Traffic: GETs over one connection, about 2,000 a second (hits on 100
# present keys, misses on absent ones), while `lookout record --redact`
# takes a snapshot every 0.2 s:
#   idle         0.7 s: baseline, intervals with no lookups
#   mostly hits  1.5 s: 95% hits
#   mostly miss  1.5 s: 30% hits            -> warn, entered
#   mostly hits  1.5 s                      -> info, cleared
#   idle, CONFIG RESETSTAT                  -> counters go back: new baseline
#   mostly miss  1.0 s                      -> warn, entered
#   restart      SHUTDOWN NOSAVE, a new redis-server on the same port (new
#                run_id, counters from 0): new baseline, state kept
#   mostly hits  1.0 s                      -> info, cleared
#
# Needs redis-server, redis-cli, python3, a built target/release/lookout
# (or LOOKOUT) and, for the events, plugins/hit-ratio.wasm (build.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
lookout="${LOOKOUT:-$repo/target/release/lookout}"
[[ -x $lookout ]] || { echo "record.sh: $lookout is missing; run \`cargo build --release -p lookout\`" >&2; exit 1; }

# shellcheck source=../../../tests/golden/redis.sh
source "$repo/tests/golden/redis.sh"
out="$tmp/snapshots.jsonl"
recorder=""

cleanup() {
    [[ -n $recorder ]] && kill "$recorder" 2>/dev/null || true
    stop_redis
    rm -rf "$tmp"
}
trap cleanup EXIT

# record POLLS: snapshots every 0.2 s in the background, appended to $out.
record() {
    "$lookout" record --redis "$url" --polls "$1" --every 0.2 --redact >>"$out" &
    recorder=$!
}
finish_recording() { wait "$recorder"; recorder=""; }

# drive PHASE...: hits=SECONDS, miss=SECONDS, sleep=SECONDS, resetstat.
drive() {
    python3 - "$port" "$@" <<'EOF'
import socket
import sys
import time

sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
reader = sock.makefile("rb")


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def send(commands):
    sock.sendall(b"".join(commands))
    for _ in commands:
        line = reader.readline()
        if line[:1] == b"-":
            sys.exit("record.sh: redis error " + line.decode().strip())
        if line[:1] == b"$" and int(line[1:]) >= 0:
            reader.read(int(line[1:]) + 2)


def gets(seconds, hits_per_20):
    """Batches of 20 GETs every 10 ms, hits_per_20 of them on present keys."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        batch = []
        for i in range(20):
            n += 1
            key = ("key:%d" if i < hits_per_20 else "absent:%d") % (n % 100)
            batch.append(command("GET", key))
        send(batch)
        time.sleep(0.01)


send([command("SET", "key:%d" % i, "v") for i in range(100)])
for phase in sys.argv[2:]:
    what, _, seconds = phase.partition("=")
    if what == "hits":
        gets(float(seconds), 19)
    elif what == "miss":
        gets(float(seconds), 6)
    elif what == "sleep":
        time.sleep(float(seconds))
    elif what == "resetstat":
        send([command("CONFIG", "RESETSTAT")])
    else:
        sys.exit("record.sh: unknown phase " + phase)
EOF
}

start_redis
record 40                                # 8 s
sleep 0.7
drive hits=1.5 miss=1.5 hits=1.5 sleep=0.5 resetstat sleep=0.6 miss=1.0
finish_recording

stop_redis                               # restart: new run_id, counters from 0
start_redis
record 12                                # 2.4 s
sleep 0.5
drive hits=1.0
finish_recording

cp "$out" "$here/snapshots.jsonl"
echo "recorded $(wc -l <"$here/snapshots.jsonl") snapshots into plugins/hit-ratio/golden/snapshots.jsonl" >&2

wasm="$repo/plugins/hit-ratio.wasm"
if [[ ! -f $wasm ]]; then
    echo "record.sh: no $wasm to replay them with; run plugins/hit-ratio/build.sh" >&2
    exit 0
fi
test_events=("$lookout" test "$wasm" --lookout-config "$here/../lookout.toml" --snapshots "$here/snapshots.jsonl")
if [[ ${1:-} == --save ]]; then
    "${test_events[@]}" >"$here/expected.jsonl"
    echo "saved plugins/hit-ratio/golden/expected.jsonl" >&2
else
    echo "== hit-ratio" >&2
    "${test_events[@]}"
fi
