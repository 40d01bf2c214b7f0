"""``record``: write the ALOHA topics (or any topics by type name) into one rosbag2."""

from __future__ import annotations

import argparse
import sys
import time

from oft_policy import names

from oft_training import bag_recovery, msgtypes
from oft_training.cli.common import UsageError, add_camera_topic_pattern_argument, run_main
from oft_training.recording import FLUSH_INTERVAL_S, STORAGES, BagRecorder, RecorderError, default_topics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="record",
        description="Record cameras, follower and leader joint states (and extra topics) into a rosbag2.",
    )
    parser.add_argument("--out", required=True, help="bag directory to create (must not exist)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="storage plugin (default mcap)")
    parser.add_argument("--cameras", nargs="*", default=list(names.CAMERA_NAMES), help="camera names to record")
    parser.add_argument("--no-leaders", action="store_true", help="do not record the leader arms")
    parser.add_argument("--commanded-action", action="store_true", help="also record the commanded-action topic")
    parser.add_argument(
        "--topic", action="append", default=[], metavar="TOPIC:TYPE",
        help="extra topic and its type, e.g. /oft/success:std_msgs/Bool (repeatable)",
    )
    add_camera_topic_pattern_argument(parser)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to record (0: until Ctrl-C)")
    parser.add_argument("--use-sim-time", action="store_true", help="stamp messages with /clock time")
    parser.add_argument("--flush-interval", type=float, default=FLUSH_INTERVAL_S,
                        help=f"seconds between writes to disk: the most a kill can lose (default {FLUSH_INTERVAL_S})")
    return parser


def parse_extra_topics(specs) -> dict:
    extra = {}
    for spec in specs:
        topic, sep, type_name = spec.rpartition(":")
        if not sep or not topic.startswith("/"):
            raise UsageError(f"--topic {spec!r} must look like /topic:pkg/Type")
        extra[topic] = msgtypes.canonical_type(type_name)
    return extra


def spin_until_done(node, recorder: BagRecorder, duration: float, label: str) -> None:
    """Spin until ``duration`` seconds passed (0: forever) or Ctrl-C / SIGTERM shut the context down."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from tqdm import tqdm

    deadline = time.monotonic() + duration if duration > 0 else None
    with tqdm(desc=f"recording {label}", unit="msg", mininterval=1.0) as bar:
        seen = 0
        try:
            while (rclpy.ok() and recorder.write_error is None
                   and (deadline is None or time.monotonic() < deadline)):
                rclpy.spin_once(node, timeout_sec=0.1)
                total = sum(recorder.message_counts.values())
                bar.update(total - seen)
                seen = total
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:
            # The signal shut the context down between rclpy.ok() and spin_once building its
            # executor or wait set (RCLError, or a TypeError on the released context handle): the
            # same stop. An error while the context is still up is a real one.
            if rclpy.ok():
                raise


def stop_or_recover(recorder: BagRecorder, out: str):
    """Close the bag; if a write failed, make what reached the disk a readable bag, then fail."""
    try:
        return recorder.stop()
    except RecorderError as failure:
        if recorder.write_error is None or not bag_recovery.is_unfinished_bag(out):
            raise
        try:
            print(bag_recovery.recover_bag(out).summary(), file=sys.stderr)
        except (bag_recovery.RecoveryError, OSError) as error:
            print(f"record: could not recover {out} yet ({error}); fit_normalizer and export retry", file=sys.stderr)
        raise failure


def main_impl(argv=None) -> int:
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.utilities import remove_ros_args

    # Accept `--ros-args ...` (what launch_ros appends) beside our own flags.
    full_argv = ["record", *(sys.argv[1:] if argv is None else argv)]
    args = build_parser().parse_args(remove_ros_args(full_argv)[1:])
    topics = default_topics(args.cameras, not args.no_leaders, args.commanded_action, parse_extra_topics(args.topic),
                            args.camera_topic_pattern)
    rclpy.init(args=full_argv)  # rclpy's own handlers turn SIGINT/SIGTERM into a context shutdown
    node = rclpy.create_node("oft_bag_recorder")
    try:
        if args.use_sim_time:
            node.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        recorder = BagRecorder(node, topics, storage=args.storage, flush_interval_s=args.flush_interval)
        recorder.start(args.out)
        try:
            spin_until_done(node, recorder, args.duration, args.out)
        finally:
            summary = stop_or_recover(recorder, args.out)  # metadata.yaml makes the bag readable
        for topic, count in summary.message_counts.items():
            print(f"{topic}: {count} messages")
        print(f"wrote {summary.path} ({summary.total} messages)")
    finally:
        if rclpy.ok():
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv=None) -> int:
    return run_main(main_impl, argv, (UsageError, RecorderError, msgtypes.MessageTypeError, OSError))


if __name__ == "__main__":
    sys.exit(main())
