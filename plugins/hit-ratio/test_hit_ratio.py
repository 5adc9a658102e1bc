"""Unit tests of hit_ratio.py; run with `python3 -m unittest` in this folder."""

import math
import unittest

from hit_ratio import (
    DEFAULT_MIN_LOOKUPS,
    DEFAULT_MIN_RATIO,
    INFO,
    WARN,
    Config,
    HitRatio,
    ratio_text,
    threshold_text,
)
import hit_ratio


def info(hits, misses, run_id="r1"):
    fields = {"keyspace_hits": str(hits), "keyspace_misses": str(misses)}
    if run_id is not None:
        fields["run_id"] = run_id
    return fields


def watcher(min_ratio=0.8, min_lookups=100):
    return HitRatio(Config(min_ratio, min_lookups))


def states(w, polls):
    """Feeds (hits, misses) counter pairs; returns (poll index, state) of events."""
    out = []
    for i, (hits, misses) in enumerate(polls):
        for e in w.observe(info(hits, misses)):
            out.append((i, e.get("state")))
    return out


class ManifestTest(unittest.TestCase):
    def test_declares_name_needs_and_config(self):
        self.assertEqual(hit_ratio.NAME, "hit-ratio")
        self.assertEqual(hit_ratio.VERSION, "0.1.0")
        self.assertEqual(
            hit_ratio.INFO_FIELDS, ("keyspace_hits", "keyspace_misses", "run_id")
        )
        keys = [(name, kind, default) for name, kind, default, _ in hit_ratio.CONFIG_KEYS]
        self.assertEqual(
            keys, [("min_ratio", "float", 0.8), ("min_lookups", "integer", 100)]
        )
        self.assertIsInstance(hit_ratio.CONFIG_KEYS[0][2], float)
        self.assertIsInstance(hit_ratio.CONFIG_KEYS[1][2], int)


class ConfigTest(unittest.TestCase):
    def test_defaults(self):
        c = Config.from_settings([])
        self.assertEqual(c, Config(DEFAULT_MIN_RATIO, DEFAULT_MIN_LOOKUPS))

    def test_accepts_range_and_widens_integers(self):
        c = Config.from_settings([("min_ratio", 1), ("min_lookups", 1)])
        self.assertEqual(c, Config(1.0, 1))
        self.assertIsInstance(c.min_ratio, float)
        self.assertEqual(Config.from_settings([("min_ratio", 0.001)]).min_ratio, 0.001)

    def test_later_setting_wins(self):
        c = Config.from_settings([("min_ratio", 0.5), ("min_ratio", 0.6)])
        self.assertEqual(c.min_ratio, 0.6)

    def test_rejects_ratio_out_of_range_naming_the_key(self):
        cases = [
            (0.0, "key `min_ratio` must be > 0 and <= 1, got 0"),
            (-0.5, "key `min_ratio` must be > 0 and <= 1, got -0.5"),
            (1.5, "key `min_ratio` must be > 0 and <= 1, got 1.5"),
            (80, "key `min_ratio` must be > 0 and <= 1, got 80"),
            (math.nan, "key `min_ratio` must be > 0 and <= 1, got NaN"),
            (math.inf, "key `min_ratio` must be > 0 and <= 1, got inf"),
        ]
        for value, message in cases:
            with self.subTest(value=value):
                with self.assertRaises(ValueError) as cm:
                    Config.from_settings([("min_ratio", value)])
                self.assertEqual(str(cm.exception), message)

    def test_rejects_min_lookups_below_one(self):
        for value in (0, -3):
            with self.assertRaises(ValueError) as cm:
                Config.from_settings([("min_lookups", value)])
            self.assertEqual(
                str(cm.exception), f"key `min_lookups` must be >= 1, got {value}"
            )

    def test_rejects_wrong_kinds(self):
        with self.assertRaises(ValueError) as cm:
            Config.from_settings([("min_ratio", "high")])
        self.assertEqual(
            str(cm.exception), 'key `min_ratio` must be a float, got a text "high"'
        )
        with self.assertRaises(ValueError) as cm:
            Config.from_settings([("min_ratio", True)])
        self.assertEqual(
            str(cm.exception), "key `min_ratio` must be a float, got a boolean true"
        )
        with self.assertRaises(ValueError) as cm:
            Config.from_settings([("min_lookups", 2.5)])
        self.assertEqual(
            str(cm.exception), "key `min_lookups` must be an integer, got a float 2.5"
        )


class ObserveTest(unittest.TestCase):
    def test_first_poll_is_a_baseline(self):
        w = watcher()
        # Even counters that would be a 0% ratio since start: no event.
        self.assertEqual(w.observe(info(0, 1_000_000)), [])
        self.assertEqual(w.previous, (0, 1_000_000, "r1"))
        self.assertFalse(w.low)

    def test_entering_low_warns_once(self):
        w = watcher()
        w.observe(info(1000, 100))
        events = w.observe(info(1420, 680))
        self.assertEqual(len(events), 1)
        e = events[0]
        self.assertEqual(e.level, WARN)
        self.assertEqual(
            e.msg, "keyspace hit ratio 0.42 below 0.80 (420 hits / 1000 lookups)"
        )
        self.assertEqual(
            e.fields,
            [
                ("hits", 420),
                ("misses", 580),
                ("lookups", 1000),
                ("ratio", 0.42),
                ("threshold", 0.8),
                ("state", "entered"),
            ],
        )
        self.assertIsInstance(e.get("ratio"), float)
        self.assertTrue(w.low)
        # Still low: quiet.
        self.assertEqual(w.observe(info(1430, 1680)), [])
        self.assertEqual(w.observe(info(1430, 2680)), [])

    def test_recovery_clears_once(self):
        w = watcher()
        w.observe(info(0, 0))
        w.observe(info(100, 900))
        events = w.observe(info(1050, 950))
        self.assertEqual(len(events), 1)
        e = events[0]
        self.assertEqual(e.level, INFO)
        self.assertEqual(
            e.msg,
            "keyspace hit ratio recovered to 0.95, threshold 0.80 (950 hits / 1000 lookups)",
        )
        self.assertEqual(
            e.fields,
            [
                ("hits", 950),
                ("misses", 50),
                ("lookups", 1000),
                ("ratio", 0.95),
                ("threshold", 0.8),
                ("state", "cleared"),
            ],
        )
        self.assertFalse(w.low)
        self.assertEqual(w.observe(info(2050, 950)), [])
        # And it can enter again.
        self.assertEqual(states(w, [(2050, 1950)]), [(0, "entered")])

    def test_healthy_ratio_is_quiet(self):
        w = watcher()
        polls = [(0, 0), (900, 100), (1800, 200), (2700, 300)]
        self.assertEqual(states(w, polls), [])

    def test_exactly_at_the_threshold_is_not_low(self):
        w = watcher(0.8, 100)
        self.assertEqual(states(w, [(0, 0), (80, 20), (160, 40)]), [])
        self.assertEqual(states(w, [(239, 61)]), [(0, "entered")])
        # Back to exactly the threshold clears.
        self.assertEqual(states(w, [(319, 81)]), [(0, "cleared")])

    def test_min_ratio_one_wants_every_lookup_a_hit(self):
        w = watcher(1.0, 1)
        self.assertEqual(states(w, [(0, 0), (5, 0), (9, 1), (15, 1)]), [(2, "entered"), (3, "cleared")])

    def test_too_few_lookups_change_nothing(self):
        w = watcher(0.8, 100)
        # 99 misses: not enough to enter.
        self.assertEqual(states(w, [(0, 0), (0, 99)]), [])
        self.assertFalse(w.low)
        # Enter, then quiet intervals do not clear.
        self.assertEqual(states(w, [(0, 199)]), [(0, "entered")])
        self.assertEqual(states(w, [(50, 199), (50, 199), (99, 199)]), [])
        self.assertTrue(w.low)
        # The baseline still moves every poll: 100 hits since the last poll clears.
        self.assertEqual(states(w, [(199, 199)]), [(0, "cleared")])

    def test_min_lookups_is_inclusive(self):
        w = watcher(0.8, 100)
        self.assertEqual(states(w, [(0, 0), (0, 100)]), [(1, "entered")])

    def test_run_id_change_rebaselines_without_event(self):
        w = watcher()
        w.observe(info(5000, 100, "r1"))
        # Restarted: counters small again, new run_id. Even a huge miss
        # count since the restart is only a baseline.
        self.assertEqual(w.observe(info(10, 4000, "r2")), [])
        self.assertEqual(w.previous, (10, 4000, "r2"))
        self.assertEqual(w.observe(info(20, 4990, "r2"))[0].get("state"), "entered")

    def test_restart_with_higher_counters_still_rebaselines(self):
        w = watcher()
        w.observe(info(10, 10, "r1"))
        # A new run_id with counters that happen to be larger: no delta taken.
        self.assertEqual(w.observe(info(10, 9000, "r2")), [])

    def test_counters_going_backwards_rebaseline_without_event(self):
        w = watcher()
        w.observe(info(5000, 5000))
        # CONFIG RESETSTAT, or a restart without run_id: misses went back.
        self.assertEqual(w.observe(info(5100, 0)), [])
        self.assertEqual(w.observe(info(5100, 10)), [])  # 10 lookups: too few
        self.assertEqual(w.previous, (5100, 10, "r1"))
        self.assertEqual(w.observe(info(0, 0)), [])
        self.assertEqual(w.observe(info(0, 500))[0].get("state"), "entered")

    def test_state_is_kept_across_a_restart(self):
        w = watcher()
        w.observe(info(0, 0, "r1"))
        self.assertEqual(w.observe(info(0, 500, "r1"))[0].get("state"), "entered")
        self.assertEqual(w.observe(info(3, 3, "r2")), [])
        self.assertTrue(w.low)
        self.assertEqual(w.observe(info(503, 3, "r2"))[0].get("state"), "cleared")

    def test_missing_run_id_is_tolerated(self):
        w = watcher()
        w.observe(info(0, 0, None))
        self.assertEqual(w.observe(info(0, 100, None))[0].get("state"), "entered")

    def test_missing_or_bad_fields_change_nothing(self):
        w = watcher()
        self.assertEqual(w.observe({}), [])
        self.assertIsNone(w.previous)
        w.observe(info(0, 0))
        for bad in (
            {"keyspace_hits": "10"},
            {"keyspace_misses": "10", "run_id": "r1"},
            info("lots", 10),
            info(10, "-1"),
            info(10, "1.5"),
            info(10, ""),
            info(10, str(1 << 64)),
        ):
            with self.subTest(bad=bad):
                self.assertEqual(w.observe(bad), [])
                self.assertEqual(w.previous, (0, 0, "r1"))
        self.assertEqual(w.observe(info(0, 100))[0].get("state"), "entered")

    def test_huge_counters_clamp_integer_fields(self):
        w = watcher(0.8, 1)
        top = (1 << 64) - 1
        w.observe(info(0, 0))
        e = w.observe(info(0, top))[0]
        self.assertEqual(e.get("misses"), (1 << 63) - 1)
        self.assertEqual(e.get("lookups"), (1 << 63) - 1)
        self.assertEqual(e.get("ratio"), 0.0)


class FormatTest(unittest.TestCase):
    def test_threshold_text(self):
        self.assertEqual(threshold_text(0.8), "0.80")
        self.assertEqual(threshold_text(1.0), "1.00")
        self.assertEqual(threshold_text(0.855), "0.855")

    def test_ratio_text_never_contradicts_the_comparison(self):
        self.assertEqual(ratio_text(0.42, 0.8, True), "0.42")
        # 0.7999 rounds to 0.80; below 0.80 needs more digits.
        self.assertEqual(ratio_text(0.7999, 0.8, True), "0.7999")
        self.assertEqual(ratio_text(0.8, 0.8, False), "0.80")
        # A threshold with three digits: two digits still tell them apart.
        self.assertEqual(ratio_text(0.8549, 0.855, True), "0.85")
        self.assertEqual(ratio_text(0.8551, 0.855, False), "0.86")
        # 0.8551 shown as 0.86 would hide that it is below 0.8552.
        self.assertEqual(ratio_text(0.8551, 0.8552, True), "0.855")

    def test_message_with_a_close_ratio(self):
        w = watcher(0.8, 100)
        w.observe(info(0, 0))
        e = w.observe(info(7999, 2001))[0]
        self.assertEqual(
            e.msg, "keyspace hit ratio 0.7999 below 0.80 (7999 hits / 10000 lookups)"
        )


if __name__ == "__main__":
    unittest.main()
