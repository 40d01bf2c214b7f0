"""Stamps as integer nanoseconds: the one split every message type uses."""

from types import SimpleNamespace

from oft_policy.stamps import NS_PER_S, seconds_to_ns, split_ns, stamp_to_ns


def test_split_and_join_are_exact():
    assert split_ns(1_700_000_000 * NS_PER_S + 42) == (1_700_000_000, 42)
    assert stamp_to_ns(SimpleNamespace(sec=12, nanosec=345_678_900)) == 12_345_678_900
    assert seconds_to_ns(0.02) == 20_000_000 and split_ns(seconds_to_ns(12.3456789)) == (12, 345_678_900)
