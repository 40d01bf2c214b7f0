"""``fit_normalizer``: proprio and action statistics from recorded telemetry -> stats JSON."""

from __future__ import annotations

import argparse
import sys

from oft_policy.calibration import CalibrationError, ConventionError
from oft_policy.normalization import ACTION_SCHEMES, StatsError

from oft_training.bagread import BagError, find_bags
from oft_training.cli.common import UsageError, add_calibration_argument, parse_calibration, run_main
from oft_training.fitting import ACTION_SOURCES, fit_from_bags
from oft_training.recording import COMMANDED_ACTION_TOPIC


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fit_normalizer",
        description="Fit proprio (z-score) and action ([-1,1]) statistics on the robot's own recordings.",
    )
    parser.add_argument("--bags", nargs="+", required=True, help="bag directories, or directories of bags")
    parser.add_argument("--out", required=True, help="stats JSON file to write")
    parser.add_argument("--action-scheme", choices=ACTION_SCHEMES, default="min_max", help="action bounds scheme")
    parser.add_argument(
        "--action-source", choices=ACTION_SOURCES, default="auto",
        help="leader arms, the commanded-action topic, or auto (commanded when the bag has it)",
    )
    parser.add_argument("--commanded-action-topic", default=COMMANDED_ACTION_TOPIC, help="commanded-action topic")
    add_calibration_argument(parser)
    parser.add_argument("--skip-corrupt", action="store_true", help="skip undecodable messages (counted) instead of failing")
    return parser


def main_impl(argv=None) -> int:
    args = build_parser().parse_args(argv)
    calibration = parse_calibration(args.calibration)
    result = fit_from_bags(
        find_bags(args.bags), args.action_source, args.action_scheme,
        "skip" if args.skip_corrupt else "fail", args.commanded_action_topic, calibration=calibration,
    )
    path = result.save(args.out)
    print(f"fitted on {result.proprio_samples} proprio and {result.action_samples} action samples -> {path}")
    print(f"convention {result.stats.convention['name']}, calibration {calibration.describe()}")
    zero = result.stats.zero_variance_proprio
    print(f"zero-variance proprio dims: {', '.join(zero) if zero else 'none'}")
    flat = result.zero_range_actions
    print(f"zero-range action dims: {', '.join(flat) if flat else 'none'}")
    for line in result.issues.lines():
        print(line)
    print(f"undecodable messages skipped: {result.issues.total}")
    return 0


def main(argv=None) -> int:
    return run_main(main_impl, argv, (UsageError, BagError, StatsError, CalibrationError, ConventionError, OSError))


if __name__ == "__main__":
    sys.exit(main())
