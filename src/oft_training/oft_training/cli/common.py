"""What every console script shares: one-line errors and a non-zero exit on bad input."""

from __future__ import annotations

import argparse
import logging
import sys

from oft_training.gripper_map import CUSTOM_FORMAT, DEFAULT_GRIPPER_MAP, PRESETS


class UsageError(Exception):
    """Bad input a command reports in one line before exiting non-zero."""


def run_main(main_impl, argv=None, expected=(Exception,)) -> int:
    """Run ``main_impl(argv)``; print ``<prog>: error: <reason>`` and return 2 on a known failure."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(main_impl(argv) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except expected as exc:  # noqa: BLE001 - every known failure becomes one line
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {reason}", file=sys.stderr)
        return 2


def add_leader_gripper_map_argument(parser: argparse.ArgumentParser) -> None:
    """The one --leader-gripper-map option of fit_normalizer and export (same name, same meaning)."""
    parser.add_argument(
        "--leader-gripper-map", default=DEFAULT_GRIPPER_MAP.name, metavar="PRESET|NUMBERS",
        help=(
            "for bags whose actions come from the leader arms: map the leader gripper angle to the follower's "
            "(linear: leader open -> follower open, leader close -> follower close). Presets: "
            + ", ".join(m.describe() for m in PRESETS.values())
            + f". Or four numbers {CUSTOM_FORMAT} in radians (write --leader-gripper-map=... when the first is "
            f"negative). Commanded-action bags are not changed. Default: {DEFAULT_GRIPPER_MAP.name}"
        ),
    )
