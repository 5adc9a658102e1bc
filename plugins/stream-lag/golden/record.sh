#!/usr/bin/env bash
# Records plugins/stream-lag/golden/snapshots.jsonl from a real redis-server:
#   baseline    stream `jobs` with group `workers`, nothing pending
#   backlog     12 entries added 3 per poll: lag 3, 6, 9, 12 (over max_lag
#               5, growing for 3 polls)
#   caught up   the group reads everything: lag 0
#   gone        the stream deleted (XINFO GROUPS: no such key), then back
# and prints what stream-lag makes of it (--save: into
# plugins/stream-lag/golden/expected.jsonl). Settings:
# plugins/stream-lag/golden/stream-lag.toml.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../tests/golden/redis.sh
source "$here/../../../tests/golden/redis.sh"

start_redis
cli xadd jobs '*' n 0
cli xgroup create jobs workers '$'
record_probes stream-lag 2
for round in 1 2 3 4; do
    for n in 1 2 3; do cli xadd jobs '*' n "$round.$n"; done
    record_probes stream-lag 1
done
cli xreadgroup group workers c1 streams jobs '>'
record_probes stream-lag 2
cli del jobs
record_probes stream-lag 1
cli xadd jobs '*' n again
cli xgroup create jobs workers '$'
record_probes stream-lag 1
golden_finish stream-lag "${1:-}"
