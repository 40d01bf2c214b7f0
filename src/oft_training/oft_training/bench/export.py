"""``bench_export``: export speed (frames/s) beside the time ``rosbags`` alone needs to read the same bag.

Writes one synthetic ALOHA bag (3 cameras by default), then, in the same run:
1. reads every message with the rosbags Reader (raw bytes, no decoding);
2. reads and CDR-deserializes every message (rosbags);
3. exports it to a LeRobotDataset v3.0 (decode, align, encode video, write parquet).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from oft_policy import names

from oft_training import msgtypes
from oft_training.bagread import open_bag
from oft_training.cli.common import run_main
from oft_training.exporter import ExportOptions, export
from oft_training.lerobot_format import DEFAULT_CODEC
from oft_training.synthetic import CALIBRATION, write_bag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_export", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="recording length")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--cameras", nargs="+", default=list(names.CAMERA_NAMES))
    parser.add_argument("--camera-hz", type=float, default=50.0)
    parser.add_argument("--fps", type=int, default=50)
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--codec", default=DEFAULT_CODEC)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (best is reported)")
    return parser


def read_raw(bag) -> int:
    reader = open_bag(bag)
    try:
        return sum(1 for _ in reader.messages())
    finally:
        reader.close()


def read_deserialized(bag) -> int:
    reader = open_bag(bag)
    store = msgtypes.new_typestore()
    try:
        return sum(1 for conn, _, raw in reader.messages() if store.deserialize_cdr(raw, conn.msgtype) is not None)
    finally:
        reader.close()


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main_impl(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        tmp = Path(tmp)
        bag = write_bag(tmp / "bag", seconds=args.seconds, camera_hz=args.camera_hz, cameras=args.cameras,
                        image_hw=(args.height, args.width), storage=args.storage)
        size_mb = sum(p.stat().st_size for p in bag.iterdir()) / 2**20
        messages = read_raw(bag)
        raw_s = best_time(lambda: read_raw(bag), args.repeats)
        decoded_s = best_time(lambda: read_deserialized(bag), args.repeats)
        runs = iter(range(args.repeats))
        options = ExportOptions("benchmark", cameras=args.cameras, fps=args.fps, min_frames=1, codec=args.codec,
                                calibration=CALIBRATION)
        frames = {}

        def one_export():
            report = export([bag], tmp / f"ds_{next(runs)}", options, progress=False)
            frames["n"] = report.frames

        export_s = best_time(one_export, args.repeats)
    n = frames["n"]
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, no GPU used")
    print(f"bag: {args.seconds:.0f} s, {len(args.cameras)} cameras {args.width}x{args.height} at {args.camera_hz:.0f} Hz, "
          f"joints at 100 Hz, {messages} messages, {size_mb:.1f} MiB, {args.storage}")
    print(f"rosbags read (raw bytes):       {raw_s:8.3f} s")
    print(f"rosbags read + deserialize:     {decoded_s:8.3f} s")
    print(f"export ({n} frames x {len(args.cameras)} cameras, {args.codec}): {export_s:8.3f} s = {n / export_s:8.1f} frames/s")
    print(f"export / raw read time:         {export_s / raw_s:8.1f}x")
    print(f"export / read+deserialize time: {export_s / decoded_s:8.1f}x")
    return 0


def main(argv=None) -> int:
    return run_main(main_impl, argv, (OSError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
