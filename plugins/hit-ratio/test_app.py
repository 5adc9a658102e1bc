"""Tests of app.py, the adapter to the WIT bindings, run natively.

Needs the bindings that build.sh generates into ./bindings; skipped without
them. Run with `python3 -m unittest` in this folder.
"""

import os
import sys
import unittest

BINDINGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bindings")

try:
    sys.path.insert(0, BINDINGS)
    from componentize_py_types import Err
    from wit_world.imports import types as t

    import app
except ImportError:
    app = None
finally:
    if sys.path and sys.path[0] == BINDINGS:
        sys.path.pop(0)


def snapshot(hits, misses, run_id="abc"):
    fields = [
        t.InfoField("stats", "keyspace_hits", str(hits)),
        t.InfoField("stats", "keyspace_misses", str(misses)),
        t.InfoField("server", "run_id", run_id),
    ]
    return t.Snapshot("127.0.0.1:6379", 0, fields, None, [])


@unittest.skipIf(app is None, "no bindings: run build.sh first")
class AppTest(unittest.TestCase):
    def setUp(self):
        self.plugin = app.Plugin()
        self.plugin.configure([])

    def test_describe(self):
        m = self.plugin.describe()
        self.assertEqual((m.name, m.version), ("hit-ratio", "0.1.0"))
        self.assertEqual(
            m.needs, t.Needs(["keyspace_hits", "keyspace_misses", "run_id"], [], False, [])
        )
        self.assertEqual(m.cadence, t.Cadence_EveryPoll())
        self.assertEqual(
            [(k.name, k.kind, k.default) for k in m.config],
            [
                ("min_ratio", t.ValueKind.FLOAT, t.Value_Float(0.8)),
                ("min_lookups", t.ValueKind.INTEGER, t.Value_Integer(100)),
            ],
        )

    def test_configure_rejects_naming_the_key(self):
        with self.assertRaises(Err) as cm:
            self.plugin.configure([t.Setting("min_ratio", t.Value_Float(1.5))])
        self.assertEqual(cm.exception.value, "key `min_ratio` must be > 0 and <= 1, got 1.5")

    def test_observe_keeps_state_and_types_fields(self):
        self.plugin.configure(
            [
                t.Setting("min_ratio", t.Value_Float(0.5)),
                t.Setting("min_lookups", t.Value_Integer(10)),
            ]
        )
        self.assertEqual(self.plugin.observe(snapshot(0, 0)), [])
        events = self.plugin.observe(snapshot(2, 18))
        self.assertEqual(
            events,
            [
                t.Event(
                    t.Level.WARN,
                    "keyspace hit ratio 0.10 below 0.50 (2 hits / 20 lookups)",
                    [
                        t.Field("hits", t.Value_Integer(2)),
                        t.Field("misses", t.Value_Integer(18)),
                        t.Field("lookups", t.Value_Integer(20)),
                        t.Field("ratio", t.Value_Float(0.1)),
                        t.Field("threshold", t.Value_Float(0.5)),
                        t.Field("state", t.Value_Text("entered")),
                    ],
                    None,
                )
            ],
        )
        self.assertEqual(self.plugin.observe(snapshot(2, 28)), [])
        cleared = self.plugin.observe(snapshot(22, 28))
        self.assertEqual(cleared[0].level, t.Level.INFO)
        # A new configure starts over: the next poll is a baseline.
        self.plugin.configure([])
        self.assertEqual(self.plugin.observe(snapshot(22, 1000)), [])


if __name__ == "__main__":
    unittest.main()
