"""CircuitBreaker().check() against `metal-guard breaker`: two panics within an hour trip it."""

import time
import unittest

import metal_guard

from support import IsolatedStateTest
from test_cooldown import write_recent_panic


class CircuitBreakerTest(IsolatedStateTest):
    def test_quiet_machine_passes(self):
        self.assertIsNone(metal_guard.CircuitBreaker().check())

    def test_two_panics_within_the_hour_trip_it(self):
        write_recent_panic(self.reports, minutes_ago=20.5)
        write_recent_panic(self.reports, minutes_ago=10.5)
        with self.assertRaises(metal_guard.MLXCooldownActive) as caught:
            metal_guard.CircuitBreaker().check()
        active = caught.exception
        self.assertIsInstance(active, RuntimeError)
        self.assertEqual(active.panic_count, 2)
        self.assertEqual(active.window_sec, 3600.0)
        self.assertGreater(active.cooldown_until, time.time())
        self.assertGreater(active.remaining_sec, 0.0)
        self.assertIn("breaker clear", str(active))

    def test_one_panic_does_not_trip_it(self):
        write_recent_panic(self.reports, minutes_ago=10.5)
        self.assertIsNone(metal_guard.CircuitBreaker().check())

    def test_other_policies_are_refused_not_ignored(self):
        with self.assertRaises(ValueError):
            metal_guard.CircuitBreaker(window_sec=86400)
        with self.assertRaises(ValueError):
            metal_guard.CircuitBreaker(state_path="/tmp/breaker.json")
        self.assertIsNotNone(
            metal_guard.CircuitBreaker(window_sec=3600, panic_threshold=2, cooldown_sec=3600)
        )


if __name__ == "__main__":
    unittest.main()
