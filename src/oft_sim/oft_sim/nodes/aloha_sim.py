"""ROS 2 node: the simulated bimanual ALOHA speaking the real arms' and cameras' interfaces.

Thin layer over `oft_sim.simulator.AlohaSim` and `oft_sim.lockstep`:
- publishes per-arm `sensor_msgs/JointState` (7 names, waist .. gripper; gripper
  normalized 0 closed .. 1 open) on the follower joint-state topics, rgb8
  `sensor_msgs/Image` per camera, `/clock`, `/sim/reward` (Float32) and
  `/sim/success` (Bool);
- takes commands from the ros2_control forward position controller topics
  (Float64MultiArray, 7 values per arm) always, and from the Interbotix
  `commands/joint_group` (group 'arm', 6 values) / `commands/joint_single`
  (name 'gripper') topics when `interbotix_xs_msgs` is importable;
- `/sim/reset` (std_srvs/Trigger) starts a new episode with the `seed` parameter.

Sim time starts at 1 s and only moves forward (a reset is one more 20 ms step), so
nodes on `use_sim_time` never see time jump back. See `oft_sim.lockstep` for when
physics advances.
"""

from __future__ import annotations

import json
import sys
import time
from typing import List

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float32, Float64MultiArray, String
from std_srvs.srv import Trigger

from oft_policy import names
from oft_policy.nodes.conversions import time_to_nanoseconds
from oft_policy.nodes.params import ParamSpec, declare_parameters
from oft_policy.nodes.spin import spin_until_shutdown
from oft_policy.qos import SENSOR_QOS, STATUS_QOS
from oft_sim import interface
from oft_sim.lockstep import ChunkCoverage, CommandBuffer, StepGate
from oft_sim.simulator import CONTROL_PERIOD_S, AlohaSim

SIM_TIME_START_NS = 1_000_000_000  # sim time 0 means "no clock yet" to use_sim_time nodes
_PERIOD_NS = int(round(CONTROL_PERIOD_S * 1e9))
# While sim time is held, the state is published again at this wall interval: nodes started
# meanwhile learn the time, and a dropped best-effort frame costs at most this long.
HOLD_REPUBLISH_S = 0.05


def _import_interbotix():
    try:
        from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
    except ImportError:
        return None
    return JointGroupCommand, JointSingleCommand


def _stamp(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


PARAMETERS = (
    ParamSpec("task", "transfer_cube", "Task scene: transfer_cube or insertion."),
    ParamSpec("seed", 0, "Seed of the object placement for the first episode and for every /sim/reset call."),
    ParamSpec("image_height", 96, "Rendered image height in pixels (all cameras)."),
    ParamSpec("image_width", 128, "Rendered image width in pixels (all cameras)."),
    ParamSpec("cameras", list(names.CAMERA_NAMES), "Cameras to render and publish on /<camera>/image_raw."),
    ParamSpec("camera_every_n_steps", 1, "Render and publish images every N control steps (1 = 50 Hz)."),
    ParamSpec("realtime", False, "Pace physics to the wall clock (latency benchmarks) instead of lockstep."),
    ParamSpec("step_timeout_s", 0.05, "Lockstep: wall seconds to wait for a command on every arm before stepping anyway."),
    ParamSpec(
        "wait_for_chunks",
        False,
        "Policy lockstep: never advance sim time past the end of the newest action chunk "
        "(waits for the next one, up to chunk_timeout_s), so policy compute time does not depend on the machine.",
    ),
    ParamSpec("chunk_timeout_s", 5.0, "wait_for_chunks: wall seconds to wait for a chunk before stepping anyway."),
    ParamSpec(
        "chunk_hold_steps",
        0,
        "wait_for_chunks: hold sim time this many steps after each chunk's observation, where the policy "
        "asks for the next one (strict lockstep); 0: hold at the chunk's last row.",
    ),
    ParamSpec(
        "chunk_ack_from_executor",
        False,
        "wait_for_chunks: count a chunk only once the executor's status reports its sequence.",
    ),
    ParamSpec("action_chunk_topic", names.ACTION_CHUNK_TOPIC, "wait_for_chunks: the policy's ActionChunk topic."),
    ParamSpec("executor_status_topic", names.EXECUTOR_STATUS_TOPIC, "chunk_ack_from_executor: the executor's status topic."),
    ParamSpec(
        "forward_command_topics",
        list(names.FORWARD_POSITION_COMMAND_TOPICS),
        "ros2_control Float64MultiArray command topics (left, right), 7 values each.",
    ),
    ParamSpec(
        "interbotix_robots",
        list(names.FOLLOWER_ROBOTS),
        "Robot namespaces (left, right) whose Interbotix command topics are followed when interbotix_xs_msgs is installed.",
    ),
    ParamSpec(
        "joint_state_topics",
        list(names.FOLLOWER_JOINT_STATE_TOPICS),
        "JointState topics (left, right), 7 joints each: waist .. gripper (gripper normalized 0 closed .. 1 open).",
    ),
)


class AlohaSimNode(Node):
    def __init__(self, **kwargs):
        super().__init__(interface.SIM_NODE_NAME, **kwargs)
        p = self._declare_parameters()
        self.sim = AlohaSim(p["task"], cameras=p["cameras"], image_size=(p["image_height"], p["image_width"]))
        self.camera_every_n_steps = max(1, p["camera_every_n_steps"])
        self.sim_time_ns = SIM_TIME_START_NS
        self.episode = 0
        self.sim.reset(p["seed"])
        self.commands = CommandBuffer(self.sim.joint_positions())
        self.rejected_commands = 0
        self.coverage = ChunkCoverage(
            p["chunk_timeout_s"], p["chunk_hold_steps"], p["chunk_ack_from_executor"]
        ) if p["wait_for_chunks"] else None
        # Strict lockstep: every step but an episode's first waits for a command from every arm
        # (only the policy's silence, chunk_timeout_s, lets time move without one).
        self.strict = self.coverage is not None and self.coverage.hold_steps > 0
        step_timeout = p["chunk_timeout_s"] if self.strict else p["step_timeout_s"]
        self.gate = StepGate(CONTROL_PERIOD_S, step_timeout, p["realtime"])
        self._first_step_uncommanded = False

        self.clock_pub = self.create_publisher(Clock, interface.CLOCK_TOPIC, 10)
        self.joint_pubs = [self.create_publisher(JointState, t, SENSOR_QOS) for t in p["joint_state_topics"]]
        self.image_pubs = {c: self.create_publisher(Image, names.camera_topic(c), SENSOR_QOS) for c in self.sim.cameras}
        self.reward_pub = self.create_publisher(Float32, interface.REWARD_TOPIC, STATUS_QOS)
        self.success_pub = self.create_publisher(Bool, interface.SUCCESS_TOPIC, STATUS_QOS)
        self.episode_pub = self.create_publisher(String, interface.EPISODE_TOPIC, STATUS_QOS)
        self._subscribe_commands(p["forward_command_topics"], p["interbotix_robots"])
        self.create_service(Trigger, interface.RESET_SERVICE, self._on_reset)
        if self.coverage is not None:
            from oft_msgs.msg import ActionChunk, ExecutorStatus

            self.create_subscription(ActionChunk, p["action_chunk_topic"], self._on_chunk, STATUS_QOS)
            if self.coverage.require_ack:
                self.create_subscription(ExecutorStatus, p["executor_status_topic"], self._on_executor_status, STATUS_QOS)

        period = CONTROL_PERIOD_S if p["realtime"] else min(p["step_timeout_s"], CONTROL_PERIOD_S) / 2
        self.create_timer(period, self._on_timer)
        self._publish_state()
        self.get_logger().info(
            f"{p['task']} seed {p['seed']}, cameras {list(self.sim.cameras)} at "
            f"{p['image_height']}x{p['image_width']}, "
            + ("realtime" if p["realtime"] else f"lockstep (step timeout {p['step_timeout_s']} s)")
        )

    # --- parameters --------------------------------------------------------------------------------

    def _declare_parameters(self) -> dict:
        values = declare_parameters(self, PARAMETERS)
        for key in ("forward_command_topics", "interbotix_robots", "joint_state_topics"):
            if len(values[key]) != len(names.ARM_SIDES):
                raise ValueError(f"parameter {key} needs one entry per arm (left, right), got {values[key]}")
        return values

    # --- commands ------------------------------------------------------------------------------------

    def _subscribe_commands(self, forward_topics: List[str], robots: List[str]) -> None:
        for arm, topic in enumerate(forward_topics):
            self.create_subscription(
                Float64MultiArray, topic, lambda msg, arm=arm: self._command(self.commands.set_arm, arm, msg.data), STATUS_QOS
            )
        interbotix = _import_interbotix()
        if interbotix is None:
            self.get_logger().info("interbotix_xs_msgs not installed: following ros2_control commands only")
            return
        group_type, single_type = interbotix
        for arm, robot in enumerate(robots):
            self.create_subscription(
                group_type, f"/{robot}/{names.INTERBOTIX_GROUP_COMMAND_TOPIC}",
                lambda msg, arm=arm: self._on_group(arm, msg), STATUS_QOS,
            )
            self.create_subscription(
                single_type, f"/{robot}/{names.INTERBOTIX_SINGLE_COMMAND_TOPIC}",
                lambda msg, arm=arm: self._on_single(arm, msg), STATUS_QOS,
            )

    def _on_group(self, arm: int, msg) -> None:
        if msg.name != names.INTERBOTIX_ARM_GROUP:
            self._reject(f"joint_group command for unknown group {msg.name!r}")
            return
        self._command(self.commands.set_arm_joints, arm, msg.cmd)

    def _on_single(self, arm: int, msg) -> None:
        if msg.name != "gripper":
            self._reject(f"joint_single command for unknown joint {msg.name!r}")
            return
        self._command(self.commands.set_gripper, arm, msg.cmd)

    def _command(self, setter, arm: int, values) -> None:
        try:
            setter(arm, values)
        except ValueError as error:
            self._reject(str(error))
            return
        self._step_if_ready()

    def _on_chunk(self, msg) -> None:
        self.coverage.add_chunk(
            time_to_nanoseconds(msg.header.stamp), time_to_nanoseconds(msg.start_time), int(msg.chunk_size),
            time_to_nanoseconds(msg.period), int(msg.sequence),
        )
        self._step_if_ready()

    def _on_executor_status(self, msg) -> None:
        self.coverage.acknowledge(int(msg.last_sequence))
        self._step_if_ready()

    def _step_if_ready(self) -> None:
        if not self.gate.realtime and self._commands_complete() and self._chunks_allow_step():
            self._step()

    def _chunks_allow_step(self) -> bool:
        if self.coverage is None:
            return True
        stalls = self.coverage.stalls
        allowed = self.coverage.allows(self.sim_time_ns + _PERIOD_NS, time.monotonic())
        if self.coverage.stalls > stalls:
            self.get_logger().warning(
                f"no action chunk within {self.coverage.timeout_s} s: stepping without one "
                f"({self.coverage.stalls} stalls so far)",
                throttle_duration_sec=2.0,
            )
        return allowed

    def _reject(self, reason: str) -> None:
        self.rejected_commands += 1
        self.get_logger().warning(f"command rejected ({self.rejected_commands} so far): {reason}", throttle_duration_sec=1.0)

    # --- stepping ------------------------------------------------------------------------------------

    def _on_timer(self) -> None:
        now = time.monotonic()
        if self._chunks_allow_step() and self.gate.should_step(now, self._commands_complete()):
            self._step()
        elif self.coverage is not None and now - self._last_publish_wall >= HOLD_REPUBLISH_S:
            # The policy lockstep holds sim time: repeat the clock and sensors so nodes started
            # meanwhile learn the time and the policy sees its inputs.
            self._publish_state(force_images=True)

    def _commands_complete(self) -> bool:
        """Every arm has commanded this step, or it is a strict episode's first step (the executor's
        first tick precedes the first chunk, so nothing commands it)."""
        return self.commands.all_fresh() or self._first_step_uncommanded

    def _step(self) -> None:
        self.sim.step(self.commands.consume())
        self._first_step_uncommanded = False
        self.gate.stepped(time.monotonic())
        self.sim_time_ns += _PERIOD_NS
        self._publish_state()

    def _on_reset(self, request, response):
        seed = int(self.get_parameter("seed").value)
        self.sim.reset(seed)
        self.episode += 1
        self.commands.reset(self.sim.joint_positions())
        self.sim_time_ns += _PERIOD_NS
        if self.coverage is not None:
            self.coverage.reset(self.sim_time_ns)
        self._first_step_uncommanded = self.strict
        self.gate.restart(time.monotonic())
        self._publish_state(force_images=True)
        response.success = True
        response.message = self._episode_json()
        self.get_logger().info(f"reset: {response.message}")
        return response

    # --- publishing ----------------------------------------------------------------------------------

    def _publish_state(self, force_images: bool = False) -> None:
        """The clock first, then the sensors stamped with it: a recorder that stamps messages by
        receive time (as `ros2 bag record` does) files them under their own header stamp."""
        self._last_publish_wall = time.monotonic()
        stamp = _stamp(self.sim_time_ns)
        self.clock_pub.publish(Clock(clock=stamp))
        positions = self.sim.joint_positions()
        velocities = self.sim.joint_velocities()
        per_arm = len(names.ARM_JOINTS)
        for arm, pub in enumerate(self.joint_pubs):
            msg = JointState()
            msg.header.stamp = stamp
            msg.name = list(names.ARM_JOINTS)
            msg.position = positions[arm * per_arm : (arm + 1) * per_arm].tolist()
            msg.velocity = velocities[arm * per_arm : (arm + 1) * per_arm].tolist()
            pub.publish(msg)
        if force_images or self.sim.steps % self.camera_every_n_steps == 0:
            for camera, image in self.sim.render().items():
                self.image_pubs[camera].publish(_image_msg(image, camera, stamp))
        self.reward_pub.publish(Float32(data=float(self.sim.reward)))
        self.success_pub.publish(Bool(data=bool(self.sim.success)))
        self.episode_pub.publish(String(data=self._episode_json()))

    def _episode_json(self) -> str:
        return json.dumps(
            {
                "episode": self.episode,
                "seed": self.sim.seed,
                "step": self.sim.steps,
                "reward": self.sim.reward,
                "max_reward": self.sim.max_reward,
                "success": self.sim.success,
                "sim_time_ns": self.sim_time_ns,
            }
        )


def _image_msg(image: np.ndarray, camera: str, stamp: Time) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = camera
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(image).tobytes()
    return msg


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        node = AlohaSimNode()
    except BaseException:
        rclpy.try_shutdown()
        raise
    return spin_until_shutdown(node)


if __name__ == "__main__":
    sys.exit(main())
