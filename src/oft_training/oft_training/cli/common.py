"""What every console script shares: one-line errors and a non-zero exit on bad input."""

from __future__ import annotations

import argparse
import logging
import sys

import json
from pathlib import Path

from oft_policy import names
from oft_policy.calibration import DEFAULT_CALIBRATION, PRESETS, Calibration, CalibrationError, calibration_preset


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


def add_calibration_argument(parser: argparse.ArgumentParser) -> None:
    """The one --calibration option of fit_normalizer and export (same name, same meaning)."""
    parser.add_argument(
        "--calibration", default=DEFAULT_CALIBRATION.name, metavar="PRESET|FILE.json",
        help=(
            "the recording rig's gripper calibration, to turn the bags' robot units into the policy's convention "
            "(grippers normalized). Presets: " + "; ".join(c.describe() for c in PRESETS.values())
            + ". Or a JSON file of a calibration record (as a dataset's meta/oft_export.json holds). "
            f"Default: {DEFAULT_CALIBRATION.name}"
        ),
    )


def parse_calibration(text: str) -> Calibration:
    """A preset name or a JSON file holding one calibration record."""
    path = Path(text)
    if path.suffix == ".json":
        try:
            return Calibration.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"cannot read calibration file {path}: {exc}") from exc
    return calibration_preset(text)


def add_camera_topic_pattern_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--camera-topic-pattern", default=names.CAMERA_TOPIC_PATTERN,
        help=f"image topic of each camera, {{camera}} standing for its name (default {names.CAMERA_TOPIC_PATTERN})",
    )
