"""A light stand-in for the follower drivers and cameras (tests, benchmarks), on the real interfaces.

Per follower namespace it is the emulated interbotix_xs_sdk driver of
`oft_policy.testing.xs_driver` (modes, torque, services, commands interpreted by mode:
the gripper starts in `linear_position`, as ALOHA's follower config has it), with
perfect tracking instead of physics: each accepted command is the new position (plus an
offset that can be set with `--stdin-control` and a stdin line `offset <value>`, in the
policy's convention). Faults, by stdin line: `cameras frozen` (every camera repeats its
last frame with its old stamp), `cameras stopped`, `cameras live`, `joint_states stopped`,
`joint_states live`. It publishes each arm's joint states as the driver does (9 names,
robot units, in a scrambled order, so consumers must match names), and optionally
camera images stamped with the current time on the realsense topics. With
`--record PATH` it writes every command it receives as one JSON line (raw values, and
whether the driver took it); with `--matched-file PATH` it creates that file once every
command subscription is matched with a publisher (tests wait for it: a command sent
before the match is lost). `--no-services` stands for a driver that offers none of its
services. SIGINT (or, with `--stdin-control`, closing stdin) stops it. The MuJoCo
simulator (oft_sim) is the full stand-in; this one costs almost no CPU.

    python -m oft_policy.testing.fake_robot --cameras cam_high,cam_left_wrist
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

import numpy as np

from oft_policy import names

SCRAMBLED_ARM_NAMES = ("left_finger", "gripper", "wrist_rotate", "waist", "elbow", "shoulder", "right_finger",
                       "forearm_roll", "wrist_angle")


def _png(frame: np.ndarray) -> bytes:
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="fake_robot", description=__doc__.splitlines()[0])
    parser.add_argument("--initial", type=float, default=0.0,
                        help="initial position of every joint, in the convention (arm rad, gripper opening)")
    parser.add_argument("--calibration", default="aloha2", help="gripper calibration preset of the emulated rig")
    parser.add_argument("--no-services", action="store_true", help="offer none of the driver's services")
    parser.add_argument("--record", default="", help="append every received command to this JSON-lines file")
    parser.add_argument("--rate", type=float, default=100.0, help="joint state rate (Hz)")
    parser.add_argument("--cameras", default="", help="comma-separated camera names to publish images for")
    parser.add_argument("--camera-rate", type=float, default=30.0)
    parser.add_argument("--image-size", default="48x64", help="HxW of the published images")
    parser.add_argument("--compressed", action="store_true",
                        help="publish PNG sensor_msgs/CompressedImage on <camera topic>/compressed instead")
    parser.add_argument("--matched-file", default="",
                        help="create this file once every command subscription has a matched publisher")
    parser.add_argument("--stdin-control", action="store_true",
                        help="read `offset <value>`, `cameras live|frozen|stopped` and `joint_states live|stopped` "
                             "lines from stdin; end of input stops the process")
    return parser.parse_args(argv)


class FakeRobot:
    def __init__(self, node, args):
        from sensor_msgs.msg import JointState

        from oft_policy.calibration import calibration_preset
        from oft_policy.testing.xs_driver import XsArmState

        self.node = node
        self.arm_dim = len(names.ARM_JOINTS)
        self.positions = [np.full(self.arm_dim, args.initial) for _ in names.FOLLOWER_ROBOTS]
        self.offset = 0.0
        self.cameras_mode = "live"
        self.joint_states_live = True
        calibration = calibration_preset(args.calibration)
        self.drivers = [XsArmState(calibration) for _ in names.FOLLOWER_ROBOTS]
        self._record = open(args.record, "a") if args.record else None
        self._lock = threading.Lock()
        self._serve(not args.no_services)
        if args.matched_file:
            self._matched_file = args.matched_file
            self._matched_timer = node.create_timer(0.05, self._check_matched)
        self._joint_state_type = JointState
        self._state_pubs = [node.create_publisher(JointState, t, 10) for t in names.FOLLOWER_JOINT_STATE_TOPICS]
        self._order = [names.DRIVER_JOINT_STATE_NAMES.index(n) for n in SCRAMBLED_ARM_NAMES]
        node.create_timer(1.0 / args.rate, self.publish_states)
        cameras = [c for c in args.cameras.split(",") if c]
        if cameras:
            self._start_cameras(cameras, args.camera_rate, tuple(int(v) for v in args.image_size.split("x")),
                                args.compressed)

    def _serve(self, with_services: bool) -> None:
        from oft_policy.testing.xs_driver_ros import serve_xs_driver

        for arm, robot in enumerate(names.FOLLOWER_ROBOTS):
            serve_xs_driver(self.node, robot, self.drivers[arm], lambda m, a=arm: self._on_group(a, m),
                            lambda m, a=arm: self._on_single(a, m), lambda reason: None, services=with_services)

    def _command_subscriptions(self) -> list:
        return [sub for sub in self.node.subscriptions if "/commands/joint_" in sub.topic_name
                and not sub.topic_name.endswith("joint_trajectory")]

    def _publisher_count(self, sub) -> int:
        # Subscription.get_publisher_count counts matched publishers (Iron and later); Humble
        # only has the graph count, which can run ahead of the match.
        count = getattr(sub, "get_publisher_count", None)
        return count() if count is not None else self.node.count_publishers(sub.topic_name)

    def _check_matched(self) -> None:
        if all(self._publisher_count(sub) >= 1 for sub in self._command_subscriptions()):
            open(self._matched_file, "w").close()
            self._matched_timer.cancel()

    def _write(self, arm, kind, name, values, refused: str = "") -> None:
        if self._record is None:
            return
        driver = self.drivers[arm]
        with self._lock:
            self._record.write(json.dumps({
                "t": time.time(), "arm": arm, "kind": kind, "name": name, "values": [float(v) for v in values],
                "mode": driver.arm.mode if kind == "group" else driver.gripper.mode, "refused": refused,
            }) + "\n")
            self._record.flush()

    def _on_group(self, arm, msg) -> None:
        from oft_policy.testing.xs_driver import DriverRefusal

        try:
            self.positions[arm][: self.arm_dim - 1] = self.drivers[arm].arm_goals(msg.name, msg.cmd)
            self._write(arm, "group", msg.name, msg.cmd)
        except DriverRefusal as refusal:
            self._write(arm, "group", msg.name, msg.cmd, str(refusal))

    def _on_single(self, arm, msg) -> None:
        from oft_policy.testing.xs_driver import DriverRefusal

        try:
            self.positions[arm][self.arm_dim - 1] = self.drivers[arm].gripper_opening(msg.name, msg.cmd)
            self._write(arm, "single", msg.name, [msg.cmd])
        except DriverRefusal as refusal:
            self._write(arm, "single", msg.name, [msg.cmd], str(refusal))

    def publish_states(self) -> None:
        if not self.joint_states_live:
            return
        stamp = self.node.get_clock().now().to_msg()
        for arm, pub in enumerate(self._state_pubs):
            values = self.positions[arm] + self.offset
            _, position = self.drivers[arm].joint_state(values[:6], values[6])
            msg = self._joint_state_type(name=list(SCRAMBLED_ARM_NAMES), position=[position[k] for k in self._order])
            msg.header.stamp = stamp
            pub.publish(msg)

    def _start_cameras(self, cameras, rate_hz, size, compressed: bool) -> None:
        from sensor_msgs.msg import CompressedImage, Image

        from oft_policy.nodes.conversions import rgb_to_image, seconds_to_time
        from oft_policy.qos import SENSOR_QOS

        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(4)]
        if compressed:
            pngs = [_png(frame) for frame in frames]
            pubs = [self.node.create_publisher(CompressedImage, f"{names.camera_topic(c)}/compressed", SENSOR_QOS)
                    for c in cameras]

            def make(index, now):
                msg = CompressedImage(format="png", data=pngs[index])
                msg.header.stamp = seconds_to_time(now)
                return msg
        else:
            pubs = [self.node.create_publisher(Image, names.camera_topic(c), SENSOR_QOS) for c in cameras]

            def make(index, now):
                return rgb_to_image(frames[index], Image, now)

        count = [0]
        last = {}

        def publish_images():
            if self.cameras_mode == "stopped":
                return
            now = self.node.get_clock().now().nanoseconds * 1e-9
            for pub in pubs:
                if self.cameras_mode == "live" or pub not in last:
                    last[pub] = make(count[0] % len(frames), now)
                pub.publish(last[pub])  # frozen: the same message, its stamp unchanged
            count[0] += 1

        self.node.create_timer(1.0 / rate_hz, publish_images)

    def read_commands(self, stream) -> None:
        """Control lines (see the module's doc); end of input stops the process."""
        for line in stream:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "offset":
                self.offset = float(parts[1])
            elif parts[:1] == ["cameras"] and parts[1:] in (["live"], ["frozen"], ["stopped"]):
                self.cameras_mode = parts[1]
            elif parts[:1] == ["joint_states"] and parts[1:] in (["live"], ["stopped"]):
                self.joint_states_live = parts[1] == "live"
        os.kill(os.getpid(), signal.SIGINT)

    def close(self) -> None:
        if self._record is not None:
            self._record.close()


def main(argv=None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    args = parse_args(sys.argv[1:] if argv is None else argv)
    rclpy.init()
    node = rclpy.create_node("fake_robot")
    robot = FakeRobot(node, args)
    if args.stdin_control:
        threading.Thread(target=robot.read_commands, args=(sys.stdin,), daemon=True).start()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        robot.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
