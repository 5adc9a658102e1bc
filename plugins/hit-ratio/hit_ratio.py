"""The `hit-ratio` watcher's logic: keyspace hit ratio below a threshold.

Pure Python with no WebAssembly imports, so it is unit-tested natively
(`python3 -m unittest` in this folder); `app.py` adapts it to the WIT
bindings.

Every poll the watcher takes the deltas of `keyspace_hits` and
`keyspace_misses` since the previous poll. When the interval saw at least
`min_lookups` lookups (hits + misses) the ratio hits / lookups decides the
state: below `min_ratio` is low. The watcher reports transitions only: one
warn on entering low, one info when the ratio recovers. An interval with
fewer lookups changes nothing. The first poll only records a baseline.

Counters restart at zero when Redis restarts: a changed `run_id`, or a
counter going backwards, re-baselines without an event (the low/normal
state is kept, so a recovery is still reported). Polls whose fields are
missing or unparseable are ignored (no event, baseline kept).
"""

import math

NAME = "hit-ratio"
VERSION = "0.1.0"
DESCRIPTION = "reports the keyspace hit ratio of an interval falling below a threshold, and recovering"

DEFAULT_MIN_RATIO = 0.8
DEFAULT_MIN_LOOKUPS = 100

HITS = "keyspace_hits"
MISSES = "keyspace_misses"
RUN_ID = "run_id"
INFO_FIELDS = (HITS, MISSES, RUN_ID)

# Settings: (name, kind, default, description); kind is "integer" or "float".
CONFIG_KEYS = (
    (
        "min_ratio",
        "float",
        DEFAULT_MIN_RATIO,
        "low when hits / lookups of an interval is below this; > 0 and <= 1",
    ),
    (
        "min_lookups",
        "integer",
        DEFAULT_MIN_LOOKUPS,
        "intervals with fewer lookups (hits + misses) change nothing; at least 1",
    ),
)

DEBUG, INFO, WARN, ERROR = "debug", "info", "warn", "error"

_I64_MAX = (1 << 63) - 1


def shown(value):
    """A setting value as the Rust SDK prints it in an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return str(value)


def invalid(key, requirement, got):
    """The SDK's error shape: "key `threshold` must be >= 0, got -3"."""
    return f"key `{key}` must be {requirement}, got {shown(got)}"


def _kind_of(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    return "a text"


class Config:
    """Validated settings."""

    def __init__(self, min_ratio=DEFAULT_MIN_RATIO, min_lookups=DEFAULT_MIN_LOOKUPS):
        self.min_ratio = min_ratio
        self.min_lookups = min_lookups

    def __eq__(self, other):
        return (self.min_ratio, self.min_lookups) == (other.min_ratio, other.min_lookups)

    def __repr__(self):
        return f"Config(min_ratio={self.min_ratio!r}, min_lookups={self.min_lookups!r})"

    @classmethod
    def from_settings(cls, settings):
        """Reads and checks `(name, value)` pairs; raises ValueError naming the key.

        Values are plain Python values (str, int, float, bool); absent keys
        take their defaults, a later duplicate wins.
        """
        values = dict(settings)
        ratio = values.get("min_ratio", DEFAULT_MIN_RATIO)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise ValueError(
                f"key `min_ratio` must be a float, got {_kind_of(ratio)} {shown(ratio)}"
            )
        ratio = float(ratio)
        # Written to also refuse NaN.
        if not (ratio > 0.0 and ratio <= 1.0):
            raise ValueError(invalid("min_ratio", "> 0 and <= 1", ratio))
        lookups = values.get("min_lookups", DEFAULT_MIN_LOOKUPS)
        if isinstance(lookups, bool) or not isinstance(lookups, int):
            raise ValueError(
                f"key `min_lookups` must be an integer, got {_kind_of(lookups)} {shown(lookups)}"
            )
        if lookups < 1:
            raise ValueError(invalid("min_lookups", ">= 1", lookups))
        return cls(ratio, lookups)


class Event:
    """What the watcher reports: a level, a message, ordered typed fields."""

    __slots__ = ("level", "msg", "fields")

    def __init__(self, level, msg, fields):
        self.level = level
        self.msg = msg
        self.fields = fields

    def get(self, name):
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def __repr__(self):
        return f"Event({self.level!r}, {self.msg!r}, {self.fields!r})"


def _unsigned(text):
    """A u64 as Redis prints it, or None."""
    if text is None or not text.isdigit() or not text.isascii():
        return None
    n = int(text)
    return n if n < (1 << 64) else None


def threshold_text(threshold):
    """0.8 -> "0.80"; a threshold with more digits keeps them (0.855)."""
    two = f"{threshold:.2f}"
    return two if float(two) == threshold else repr(threshold)


def ratio_text(ratio, threshold, low):
    """The ratio with two decimals, or more when two would contradict the
    comparison with the threshold (0.7999 shown as "0.80" below "0.80")."""
    t = float(threshold_text(threshold))
    for digits in range(2, 10):
        text = f"{ratio:.{digits}f}"
        if (float(text) < t) == low:
            return text
    return repr(ratio)


class HitRatio:
    """The watcher's logic and state."""

    def __init__(self, config=None):
        self.config = config if config is not None else Config()
        # (hits, misses, run_id) at the previous usable poll.
        self.previous = None
        # Whether the last decisive interval was below the threshold.
        self.low = False

    def observe(self, info):
        """Looks at one poll's INFO fields (a name -> text mapping); returns
        a list of at most one Event."""
        hits = _unsigned(info.get(HITS))
        misses = _unsigned(info.get(MISSES))
        if hits is None or misses is None:
            return []
        run_id = info.get(RUN_ID)
        previous, self.previous = self.previous, (hits, misses, run_id)
        if previous is None:
            return []
        prev_hits, prev_misses, prev_run_id = previous
        if run_id != prev_run_id or hits < prev_hits or misses < prev_misses:
            # Restarted (or counters reset with CONFIG RESETSTAT): the new
            # values are the baseline.
            return []
        d_hits = hits - prev_hits
        d_misses = misses - prev_misses
        lookups = d_hits + d_misses
        if lookups < self.config.min_lookups:
            return []
        ratio = d_hits / lookups
        low = ratio < self.config.min_ratio
        if low == self.low:
            return []
        self.low = low
        threshold = self.config.min_ratio
        shown_ratio = ratio_text(ratio, threshold, low)
        shown_threshold = threshold_text(threshold)
        counts = f"({d_hits} hits / {lookups} lookups)"
        if low:
            level, state = WARN, "entered"
            msg = f"keyspace hit ratio {shown_ratio} below {shown_threshold} {counts}"
        else:
            level, state = INFO, "cleared"
            msg = f"keyspace hit ratio recovered to {shown_ratio}, threshold {shown_threshold} {counts}"
        fields = [
            ("hits", min(d_hits, _I64_MAX)),
            ("misses", min(d_misses, _I64_MAX)),
            ("lookups", min(lookups, _I64_MAX)),
            ("ratio", ratio),
            ("threshold", threshold),
            ("state", state),
        ]
        return [Event(level, msg, fields)]
