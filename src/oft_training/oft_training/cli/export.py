"""``export``: rosbag2 recordings or ALOHA/ACT hdf5 episodes -> LeRobotDataset v3.0."""

from __future__ import annotations

import argparse
import sys

from oft_policy import names

from oft_training.bagread import BagError
from oft_training.cli.common import (
    UsageError, add_calibration_argument, add_camera_topic_pattern_argument, parse_calibration, run_main,
)
from oft_training.exporter import ExportError, ExportOptions, export
from oft_training.fitting import ACTION_SOURCES
from oft_training.lerobot_format import DEFAULT_CODEC, DatasetFormatError
from oft_training.recording import COMMANDED_ACTION_TOPIC


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export",
        description=(
            "Export recordings to a LeRobotDataset v3.0 (one episode per bag or hdf5 file). Frames at a fixed "
            "rate from the first time every stream has a message; each takes the newest message at or before it."
        ),
    )
    parser.add_argument("--bags", nargs="+", required=True, help="bag dirs, dirs of bags, or ALOHA hdf5 episode files")
    parser.add_argument("--out", required=True, help="dataset directory to create (must not exist)")
    parser.add_argument("--instruction", default="",
                        help="task instruction of every episode whose bag records none on /oft/instruction (and of hdf5 "
                             "episodes); a bag's own recorded instruction wins")
    parser.add_argument("--cameras", nargs="+", default=list(names.CAMERA_NAMES), help="camera names")
    parser.add_argument("--fps", type=int, default=50, help="dataset frame rate (default 50, ALOHA's)")
    parser.add_argument("--action-source", choices=ACTION_SOURCES, default="auto",
                        help="leader arms, commanded-action topic, or auto (commanded when present)")
    parser.add_argument("--commanded-action-topic", default=COMMANDED_ACTION_TOPIC)
    add_calibration_argument(parser)
    add_camera_topic_pattern_argument(parser)
    parser.add_argument("--max-gap", type=float, default=0.5, help="longest gap (s) in any stream before an episode is skipped")
    parser.add_argument("--min-frames", type=int, default=25, help="episodes shorter than this (one chunk) are skipped")
    parser.add_argument("--episode-topic", default=None,
                        help="split bags into episodes at each message on this topic (default: one episode per bag)")
    parser.add_argument("--skip-corrupt", action="store_true", help="skip undecodable messages (counted) instead of failing")
    parser.add_argument("--codec", default=DEFAULT_CODEC, help="PyAV video encoder (default libsvtav1, as LeRobot)")
    return parser


def main_impl(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.fps <= 0 or args.min_frames < 1 or args.max_gap <= 0:
        raise UsageError("--fps, --min-frames and --max-gap must be positive")
    options = ExportOptions(
        instruction=args.instruction, cameras=args.cameras, fps=args.fps, action_source=args.action_source,
        commanded_topic=args.commanded_action_topic, max_gap_s=args.max_gap, min_frames=args.min_frames,
        on_corrupt="skip" if args.skip_corrupt else "fail", codec=args.codec, episode_topic=args.episode_topic,
        calibration=parse_calibration(args.calibration), camera_topic_pattern=args.camera_topic_pattern,
    )
    report = export(args.bags, args.out, options)
    for line in report.lines():
        print(line)
    return 0


def main(argv=None) -> int:
    return run_main(main_impl, argv, (UsageError, BagError, ExportError, DatasetFormatError, OSError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
