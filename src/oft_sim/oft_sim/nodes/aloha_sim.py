"""ROS 2 node: the simulated bimanual ALOHA behind the real follower driver's and cameras' interfaces.

Thin layer over `oft_sim.simulator.AlohaSim` (physics), `oft_sim.xs_driver` (the
interbotix_xs_sdk driver's modes and units) and `oft_sim.lockstep`. Per follower robot
namespace (`robot_names`, default follower_left, follower_right), as the ALOHA stack has it:
- `/<robot>/joint_states`: sensor_msgs/JointState at 100 Hz sim time, 9 names (waist ..
  wrist_rotate, gripper motor radians, left_finger / right_finger metres);
- `/<robot>/commands/joint_group` (group `arm`, 6 values) and `commands/joint_single`
  (`gripper`), interpreted by the current operating mode; `commands/joint_trajectory` is
  refused with a message (the emulation has no trajectory follower);
- services `set_operating_modes`, `torque_enable`, `get_robot_info`, `reboot_motors`.
  The driver starts with the arm in `position` and the gripper in `linear_position`;
Cameras publish rgb8 images on realsense2_camera's topics (`camera_topic_pattern`), and
the simulator adds `/clock`, `/sim/reward` (Float32), `/sim/success` (Bool), `/sim/episode`
and `/sim/reset` (std_srvs/Trigger, a new episode with the `seed` parameter).

Sim time starts at 1 s and only moves forward (a reset is one more 20 ms step), so
nodes on `use_sim_time` never see time jump back. See `oft_sim.lockstep` for when
physics advances.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float32, String
from std_srvs.srv import Trigger

from oft_policy import names
from oft_policy.nodes.conversions import nanoseconds_to_time, time_to_nanoseconds
from oft_policy.nodes.params import CALIBRATION_PARAMETERS, ParamSpec, calibration_from_parameters, declare_parameters
from oft_policy.nodes.spin import spin_until_shutdown
from oft_policy.stamps import seconds_to_ns
from oft_policy.qos import SENSOR_QOS, STATUS_QOS
from oft_sim import interface
from oft_sim.lockstep import ChunkCoverage, CommandBuffer, StepGate
from oft_sim.simulator import CONTROL_PERIOD_S, AlohaSim
from oft_sim.tasks import TASKS
from oft_policy.testing.xs_driver import DriverRefusal, XsArmState
from oft_policy.testing.xs_driver_ros import DRIVER_QOS, joint_state_msg, serve_xs_driver

SIM_TIME_START_NS = 1_000_000_000  # sim time 0 means "no clock yet" to use_sim_time nodes
_PERIOD_NS = seconds_to_ns(CONTROL_PERIOD_S)
# While sim time is held, the state is published again at this wall interval: nodes started
# meanwhile learn the time, and a dropped best-effort frame costs at most this long.
HOLD_REPUBLISH_S = 0.05


PARAMETERS = (
    ParamSpec("task", "transfer_cube", f"Task (oft_sim.tasks): {', '.join(TASKS)}."),
    ParamSpec("seed", 0, "Seed of the object placement for the first episode and for every /sim/reset call."),
    ParamSpec("target", "", "What the episode's instruction names, for tasks that choose (handover_by_color: red or blue); empty: the seed's default. Read at every /sim/reset."),
    ParamSpec("image_height", 96, "Rendered image height in pixels (all cameras)."),
    ParamSpec("image_width", 128, "Rendered image width in pixels (all cameras)."),
    ParamSpec("cameras", list(names.CAMERA_NAMES), "Cameras to render and publish (topics from camera_topic_pattern)."),
    ParamSpec("camera_topic_pattern", names.CAMERA_TOPIC_PATTERN, "Image topic of each camera; {camera} is its name."),
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
    ParamSpec("robot_names", list(names.FOLLOWER_ROBOTS), "Follower robot namespaces (left, right): joint states, commands and driver services."),
    *CALIBRATION_PARAMETERS,
)


class AlohaSimNode(Node):
    def __init__(self, **kwargs):
        super().__init__(interface.SIM_NODE_NAME, **kwargs)
        p = self._declare_parameters()
        self.sim = AlohaSim(p["task"], cameras=p["cameras"], image_size=(p["image_height"], p["image_width"]))
        self.camera_every_n_steps = max(1, p["camera_every_n_steps"])
        self.sim_time_ns = SIM_TIME_START_NS
        self._rendered = (None, {})  # (sim time, camera -> Image) of the newest render
        self.episode = 0
        self.sim.reset(p["seed"], p["target"] or None)
        self.commands = CommandBuffer(self.sim.joint_positions())
        self.calibration = calibration_from_parameters(p)
        self.robots = list(p["robot_names"])
        self.drivers = [XsArmState(self.calibration) for _ in self.robots]
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
        # The driver publishes joint states reliable, depth 10 (best-effort readers match it too).
        self.joint_pubs = [self.create_publisher(JointState, f"/{robot}/joint_states", DRIVER_QOS) for robot in self.robots]
        self.image_pubs = {
            c: self.create_publisher(Image, names.camera_topic(c, p["camera_topic_pattern"]), SENSOR_QOS)
            for c in self.sim.cameras
        }
        self.reward_pub = self.create_publisher(Float32, interface.REWARD_TOPIC, STATUS_QOS)
        self.success_pub = self.create_publisher(Bool, interface.SUCCESS_TOPIC, STATUS_QOS)
        self.episode_pub = self.create_publisher(String, interface.EPISODE_TOPIC, STATUS_QOS)
        for arm, robot in enumerate(self.robots):
            serve_xs_driver(self, robot, self.drivers[arm], lambda msg, arm=arm: self._on_group(arm, msg),
                            lambda msg, arm=arm: self._on_single(arm, msg), self._reject)
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
        if len(values["robot_names"]) != len(names.ARM_SIDES):
            raise ValueError(f"parameter robot_names needs one entry per arm (left, right), got {values['robot_names']}")
        return values

    # --- commands ------------------------------------------------------------------------------------

    def _on_group(self, arm: int, msg) -> None:
        try:
            goals = self.drivers[arm].arm_goals(msg.name, msg.cmd)
        except DriverRefusal as refusal:
            self._reject(f"{self.robots[arm]}: {refusal}")
            return
        self._command(self.commands.set_arm_joints, arm, goals)

    def _on_single(self, arm: int, msg) -> None:
        try:
            opening = self.drivers[arm].gripper_opening(msg.name, msg.cmd)
        except DriverRefusal as refusal:
            self.commands.gripper_refused(arm)
            self._reject(f"{self.robots[arm]}: {refusal}")
            self._step_if_ready()
            return
        self._command(self.commands.set_gripper, arm, opening)

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
        # Joint states at twice the control rate, as the driver's 100 Hz: one halfway through.
        midpoint = nanoseconds_to_time(self.sim_time_ns + _PERIOD_NS // 2)
        self.sim.step(self.commands.consume(), at_midpoint=lambda: self._publish_joint_states(midpoint))
        self._first_step_uncommanded = False
        self.gate.stepped(time.monotonic())
        self.sim_time_ns += _PERIOD_NS
        self._publish_state()

    def _on_reset(self, request, response):
        seed = int(self.get_parameter("seed").value)
        try:
            self.sim.reset(seed, self.get_parameter("target").value or None)
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
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
        stamp = nanoseconds_to_time(self.sim_time_ns)
        self._publish_joint_states(stamp)
        if force_images or self.sim.steps % self.camera_every_n_steps == 0:
            for camera, msg in self._images_at(stamp).items():
                self.image_pubs[camera].publish(msg)
        self.reward_pub.publish(Float32(data=float(self.sim.reward)))
        self.success_pub.publish(Bool(data=bool(self.sim.success)))
        self.episode_pub.publish(String(data=self._episode_json()))

    def _images_at(self, stamp: Time) -> dict:
        """The cameras' messages at the current sim time: rendered once, repeated while time is held."""
        if self._rendered[0] != self.sim_time_ns:
            self._rendered = (self.sim_time_ns, {c: _image_msg(image, c, stamp) for c, image in self.sim.render().items()})
        return self._rendered[1]

    def _publish_joint_states(self, stamp: Time) -> None:
        """/clock at `stamp`, then each follower's driver joint states (9 names, robot units)."""
        self.clock_pub.publish(Clock(clock=stamp))
        positions = self.sim.joint_positions()
        velocities = self.sim.joint_velocities()
        per_arm = len(names.ARM_JOINTS)
        for arm, pub in enumerate(self.joint_pubs):
            block = slice(arm * per_arm, (arm + 1) * per_arm)
            pub.publish(joint_state_msg(self.drivers[arm], stamp, positions[block][:6], positions[block][6],
                                        velocities[block][:6], velocities[block][6]))

    def _episode_json(self) -> str:
        return json.dumps(
            {
                "episode": self.episode,
                "seed": self.sim.seed,
                "target": self.sim.target,
                "grasped": self.sim.grasped,
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
