#!/usr/bin/env bash
# Records plugins/latency/golden/snapshots.jsonl from a real redis-server:
#   monitor off   latency-monitor-threshold 0: LATENCY LATEST unavailable
#   spikes        threshold 10 ms, DEBUG SLEEP 0.05 (a 50 ms spike), a quiet
#                 poll, DEBUG SLEEP 0.03 (30 ms), DEBUG SLEEP 0.012 (under
#                 the watcher's 20 ms)
# and prints what latency makes of it (--save: into
# plugins/latency/golden/expected.jsonl). Settings:
# plugins/latency/golden/latency.toml.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../tests/golden/redis.sh
source "$here/../../../tests/golden/redis.sh"

start_redis --enable-debug-command yes --latency-monitor-threshold 0
record_probes latency 2
cli config set latency-monitor-threshold 10
cli debug sleep 0.05
record_probes latency 2
sleep 1.1   # a later spike has another latest_at second
cli debug sleep 0.03
record_probes latency 1
sleep 1.1
cli debug sleep 0.012
record_probes latency 1
golden_finish latency "${1:-}"
