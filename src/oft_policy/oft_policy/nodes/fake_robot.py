"""A light stand-in for the arms and cameras, speaking the drivers' interfaces (tests, benchmarks).

It subscribes to the executor's commands (Interbotix xs JointGroupCommand +
JointSingleCommand, or ros2_control Float64MultiArray / JointTrajectory), moves
its joints to each command at once (perfect tracking, plus an offset that can be
set with `--stdin-control` and a stdin line `offset <value>`), publishes each arm's joint
states as the Interbotix driver does (the 7 joint names plus the finger joints,
in a scrambled order, so consumers must match names), and optionally publishes
camera images stamped with the current time. With `--record PATH` it writes every
command it receives as one JSON line; with `--matched-file PATH` it creates that file once
every command subscription is matched with a publisher (tests wait for it: a command sent
before the match is lost). SIGINT (or, with `--stdin-control`, closing stdin) stops it.
The MuJoCo simulator (oft_sim) is the full stand-in; this one costs almost no CPU.

    python -m oft_policy.nodes.fake_robot --backend interbotix --cameras cam_high,cam_left_wrist
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
FINGER_POSITION = 0.03
BACKENDS = ("interbotix", "forward_position", "joint_trajectory")


def _png(frame: np.ndarray) -> bytes:
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="fake_robot", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="interbotix")
    parser.add_argument("--initial", type=float, default=0.0, help="initial position of every joint")
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
                        help="read `offset <value>` lines from stdin; end of input stops the process")
    return parser.parse_args(argv)


class FakeRobot:
    def __init__(self, node, args):
        from oft_policy.qos import SENSOR_QOS

        self.node = node
        self.arm_dim = len(names.ARM_JOINTS)
        self.positions = [np.full(self.arm_dim, args.initial) for _ in names.FOLLOWER_ROBOTS]
        self.offset = 0.0
        self._record = open(args.record, "a") if args.record else None
        self._lock = threading.Lock()
        self._command_subs = []
        self._subscribe(args.backend)
        if args.matched_file:
            self._matched_file = args.matched_file
            self._matched_timer = node.create_timer(0.05, self._check_matched)
        from sensor_msgs.msg import JointState

        self._joint_state_type = JointState
        self._state_pubs = [node.create_publisher(JointState, t, SENSOR_QOS) for t in names.FOLLOWER_JOINT_STATE_TOPICS]
        self._order = [names.ARM_JOINTS.index(n) if n in names.ARM_JOINTS else None for n in SCRAMBLED_ARM_NAMES]
        node.create_timer(1.0 / args.rate, self.publish_states)
        cameras = [c for c in args.cameras.split(",") if c]
        if cameras:
            self._start_cameras(cameras, args.camera_rate, tuple(int(v) for v in args.image_size.split("x")),
                                args.compressed)

    def _subscribe(self, backend: str) -> None:
        for arm, robot in enumerate(names.FOLLOWER_ROBOTS):
            if backend == "interbotix":
                from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand

                self._command_subscription(JointGroupCommand, f"/{robot}/{names.INTERBOTIX_GROUP_COMMAND_TOPIC}",
                                           lambda m, a=arm: self._on_group(a, m))
                self._command_subscription(JointSingleCommand, f"/{robot}/{names.INTERBOTIX_SINGLE_COMMAND_TOPIC}",
                                           lambda m, a=arm: self._on_single(a, m))
            elif backend == "forward_position":
                from std_msgs.msg import Float64MultiArray

                self._command_subscription(Float64MultiArray, names.FORWARD_POSITION_COMMAND_TOPICS[arm],
                                           lambda m, a=arm: self._on_array(a, m))
            else:
                from trajectory_msgs.msg import JointTrajectory

                self._command_subscription(JointTrajectory, names.FORWARD_POSITION_COMMAND_TOPICS[arm],
                                           lambda m, a=arm: self._on_trajectory(a, m))

    def _command_subscription(self, msg_type, topic: str, callback) -> None:
        from oft_policy.qos import STATUS_QOS

        self._command_subs.append(self.node.create_subscription(msg_type, topic, callback, STATUS_QOS))

    def _publisher_count(self, sub) -> int:
        # Subscription.get_publisher_count counts matched publishers (Iron and later); Humble
        # only has the graph count, which can run ahead of the match.
        count = getattr(sub, "get_publisher_count", None)
        return count() if count is not None else self.node.count_publishers(sub.topic_name)

    def _check_matched(self) -> None:
        if all(self._publisher_count(sub) >= 1 for sub in self._command_subs):
            open(self._matched_file, "w").close()
            self._matched_timer.cancel()

    def _write(self, arm, kind, name, values) -> None:
        if self._record is None:
            return
        with self._lock:
            self._record.write(json.dumps({"t": time.time(), "arm": arm, "kind": kind, "name": name,
                                           "values": [float(v) for v in values]}) + "\n")
            self._record.flush()

    def _on_group(self, arm, msg) -> None:
        self._write(arm, "group", msg.name, msg.cmd)
        if msg.name == names.INTERBOTIX_ARM_GROUP and len(msg.cmd) == self.arm_dim - 1:
            self.positions[arm][: self.arm_dim - 1] = msg.cmd

    def _on_single(self, arm, msg) -> None:
        self._write(arm, "single", msg.name, [msg.cmd])
        if msg.name == "gripper":
            self.positions[arm][self.arm_dim - 1] = msg.cmd

    def _on_array(self, arm, msg) -> None:
        self._write(arm, "array", "", msg.data)
        if len(msg.data) == self.arm_dim:
            self.positions[arm][:] = msg.data

    def _on_trajectory(self, arm, msg) -> None:
        values = msg.points[0].positions if msg.points else []
        self._write(arm, "trajectory", ",".join(msg.joint_names), values)
        if len(values) == self.arm_dim:
            self.positions[arm][:] = values

    def publish_states(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        for arm, pub in enumerate(self._state_pubs):
            values = self.positions[arm] + self.offset
            msg = self._joint_state_type(
                name=list(SCRAMBLED_ARM_NAMES),
                position=[float(values[k]) if k is not None else FINGER_POSITION for k in self._order],
            )
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

        def publish_images():
            now = self.node.get_clock().now().nanoseconds * 1e-9
            for pub in pubs:
                pub.publish(make(count[0] % len(frames), now))
            count[0] += 1

        self.node.create_timer(1.0 / rate_hz, publish_images)

    def read_commands(self, stream) -> None:
        """`offset <value>` lines; end of input stops the process."""
        for line in stream:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "offset":
                self.offset = float(parts[1])
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
