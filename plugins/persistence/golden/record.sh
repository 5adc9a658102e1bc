#!/usr/bin/env bash
# Records plugins/persistence/golden/snapshots.jsonl from a real redis-server:
#   baseline     100 keys, saved: nothing unsaved
#   save failed  5 keys written, `dir` set to a directory then deleted:
#                BGSAVE fails (rdb_last_bgsave_status err), 2 polls
#   recovered    the directory recreated and set again: BGSAVE ok
#   slow save    rdb-key-save-delay 40 ms per key: a BGSAVE of about 4 s,
#                seen running for 2 s (over max_bgsave_s 1), then finished
#   save too old one unsaved change, the last save over 2 s old
#                (max_save_age_s 2), 2 polls; then SAVE
# and prints what persistence makes of it (--save: into
# plugins/persistence/golden/expected.jsonl). Settings:
# plugins/persistence/golden/persistence.toml.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../tests/golden/redis.sh
source "$here/../../../tests/golden/redis.sh"
# field NAME: NAME from INFO persistence.
field() { info_field persistence "$1"; }
wait_seconds=20   # for wait_until (redis.sh)
field_is() { [ "$(field "$1")" = "$2" ]; }
field_at_least() { [ "$(field "$1")" -ge "$2" ]; }
save_older_than() { [ $(( $(date +%s) - $(field rdb_last_save_time) )) -gt "$1" ]; }

start_redis --enable-protected-configs yes
for n in $(seq 100); do cli set "key:$n" "$n"; done
cli save
record_probes persistence 1

for n in $(seq 5); do cli set "new:$n" "$n"; done
mkdir "$tmp/data"
cli config set dir "$tmp/data"
rmdir "$tmp/data"
cli bgsave
wait_until "failed save" field_is rdb_last_bgsave_status err
record_probes persistence 2

mkdir "$tmp/data"
cli config set dir "$tmp/data"
cli bgsave
wait_until "save ok" field_is rdb_last_bgsave_status ok
record_probes persistence 1

cli config set rdb-key-save-delay 40000
cli bgsave
wait_until "a save running 2 s" field_at_least rdb_current_bgsave_time_sec 2
record_probes persistence 1
wait_until "the save done" field_is rdb_bgsave_in_progress 0
cli config set rdb-key-save-delay 0
record_probes persistence 1

cli set unsaved 1
wait_until "the last save 3 s old" save_older_than 2
record_probes persistence 2
cli save
record_probes persistence 1
golden_finish persistence "${1:-}"
