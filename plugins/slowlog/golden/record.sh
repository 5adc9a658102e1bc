#!/usr/bin/env bash
# Records plugins/slowlog/golden/snapshots.jsonl from a real redis-server
# driven through the session of tests/golden/session.sh (slow commands, a
# client surge, memory pressure, a restart) and prints what slowlog makes
# of it (--save: into plugins/slowlog/golden/expected.jsonl).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../tests/golden/redis.sh
source "$here/../../../tests/golden/redis.sh"
# shellcheck source=../../../tests/golden/session.sh
source "$here/../../../tests/golden/session.sh"

record_session slowlog
golden_finish slowlog "${1:-}"
