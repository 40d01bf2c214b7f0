"""Scripted demonstrations recorded as a teleoperation session on a real ALOHA is recorded.

The scripted trajectory plays the operator's leader arms: each control step it is
published as the leaders' joint states (`/leader_left/joint_states`, 9 names, the
gripper as the leader gripper joint in radians), and the followers are commanded from
it as ALOHA's teleoperation does, through the emulated xs drivers of `aloha_sim`
(group `arm` and single `gripper`, the gripper mapped leader -> follower through the
calibration), after setting up the followers' operating modes as ALOHA's scripts do.
The suite's recorder (`oft_training.recording.BagRecorder`) writes one rosbag2 per
episode with the realsense camera topics and the follower and leader joint states,
exactly what `record` writes on the real robot.

Lockstep handshake per control step k: publish the leaders' states, wait until the
recorder has them (so they are filed under the sim time of the observation they were
computed for), command both followers, wait for the simulator's episode record of
step k+1. Only successful episodes are kept (as episode_000, episode_001, ...); the
output appears only when done.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from oft_policy import names
from oft_policy.calibration import DEFAULT_CALIBRATION, Calibration, arm_command
from oft_sim import interface
from oft_policy.processes import NodeProcess, node_command, ros_args
from oft_sim.scripted_policy import EPISODE_STEPS, scripted_trajectory
from oft_sim.simulator import AlohaSim
from oft_sim.tasks import get_task

SUMMARY_FILENAME = "demos.json"


@dataclass
class DemoEpisode:
    seed: int
    success: bool
    max_reward: int
    steps: int
    bag: Optional[str] = None  # kept bag directory name, None when discarded
    target: str = ""  # what the instruction names (tasks that choose among objects)
    instruction: str = ""
    message_counts: Dict[str, int] = field(default_factory=dict)


def spread_seeds(task: str, count: int, pool: Sequence[int]) -> List[int]:
    """`count` seeds of `pool` whose object positions spread evenly over the task's sampling
    region (farthest-point selection), so that demonstrations reach its edges as well as its
    middle; a random draw of the same size leaves gaps there."""
    pool = [int(seed) for seed in pool]
    if not 1 <= count <= len(pool):
        raise ValueError(f"cannot pick {count} seeds from a pool of {len(pool)}")
    sampler = get_task(task).object_qpos
    positions = np.stack([np.asarray(sampler(seed)).reshape(-1, 7)[:, :3].ravel() for seed in pool])
    scale = np.ptp(positions, axis=0)
    positions = (positions - positions.min(axis=0)) / np.where(scale > 0, scale, 1.0)
    chosen = [int(np.argmin(np.linalg.norm(positions - positions.mean(axis=0), axis=1)))]
    distance = np.linalg.norm(positions - positions[chosen[0]], axis=1)
    while len(chosen) < count:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(positions - positions[chosen[-1]], axis=1))
    return sorted(pool[i] for i in chosen)


def plan_episode(planner: AlohaSim, seed: int, steps: int, target: Optional[str] = None) -> np.ndarray:
    planner.reset(seed, target)
    return scripted_trajectory(planner, steps)


class _Teleoperation:
    """The demonstrator's rclpy side: leader arms, follower commands, recorder, simulator client."""

    def __init__(self, cameras: Sequence[str], storage: str, calibration: Calibration):
        import rclpy
        from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import JointState

        from oft_policy.qos import STATUS_QOS
        from oft_sim.sim_client import SimClient
        from oft_training.recording import BagRecorder, default_topics

        self._rclpy = rclpy
        self.calibration = calibration
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(
            "scripted_demos",
            context=self.context,
            parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)],
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._types = JointGroupCommand, JointSingleCommand, JointState
        self.follower_pubs = [
            (self.node.create_publisher(JointGroupCommand, f"/{robot}/{names.INTERBOTIX_GROUP_COMMAND_TOPIC}", STATUS_QOS),
             self.node.create_publisher(JointSingleCommand, f"/{robot}/{names.INTERBOTIX_SINGLE_COMMAND_TOPIC}", STATUS_QOS))
            for robot in names.FOLLOWER_ROBOTS
        ]
        self.leader_pubs = [self.node.create_publisher(JointState, topic, STATUS_QOS)
                            for topic in names.LEADER_JOINT_STATE_TOPICS]
        from std_msgs.msg import String

        from oft_policy.qos import INSTRUCTION_QOS

        self._string = String
        self.instruction_pub = self.node.create_publisher(String, names.INSTRUCTION_TOPIC, INSTRUCTION_QOS)
        topics = default_topics(
            cameras=cameras,
            leaders=True,
            extra={interface.REWARD_TOPIC: "std_msgs/msg/Float32", interface.SUCCESS_TOPIC: "std_msgs/msg/Bool"},
        )
        self.recorder = BagRecorder(self.node, topics, storage=storage)
        self.sim = SimClient(self.node, self.spin)

    def spin(self, seconds: float) -> None:
        self.executor.spin_once(timeout_sec=seconds)

    def wait(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
            self.spin(0.005)

    def set_up_followers(self) -> None:
        from oft_policy.nodes.services import set_up_xs_followers

        set_up_xs_followers(self.node, self.spin, names.FOLLOWER_ROBOTS)

    def wait_for_sim_clock(self, seed: int, attempts: int = 20) -> None:
        """Reset until this node has seen a /clock message. Until it has, its clock reads 0 and the
        recorder skips what arrives, which would cost the first episode its first observation."""
        for _ in range(attempts):
            self.sim.reset(seed)
            try:
                self.wait(lambda: self.node.get_clock().now().nanoseconds > 0, 0.5, "the simulator's /clock")
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"no /clock from the simulator after {attempts} resets")

    def publish_leaders(self, action: np.ndarray) -> None:
        """The leader arms holding `action` (the convention) as their drivers would report it."""
        joint_state = self._types[2]
        stamp = self.node.get_clock().now().to_msg()
        for side, pub in enumerate(self.leader_pubs):
            arm = action[7 * side: 7 * side + 7]
            finger = float(self.calibration.leader_finger.denormalize(arm[6]))
            position = [*map(float, arm[:6]), float(self.calibration.leader_gripper_joint(arm[6])), finger, -finger]
            msg = joint_state(name=list(names.DRIVER_JOINT_STATE_NAMES), position=position)
            msg.header.stamp = stamp
            pub.publish(msg)

    def command_followers(self, action: np.ndarray) -> None:
        """ALOHA's teleoperation: follower arm joints = leader's; follower gripper joint from the leader's fraction."""
        group_type, single_type, _ = self._types
        for side, (group_pub, single_pub) in enumerate(self.follower_pubs):
            arm, gripper = arm_command(action[7 * side: 7 * side + 7], self.calibration)
            group_pub.publish(group_type(name=names.INTERBOTIX_ARM_GROUP, cmd=arm))
            single_pub.publish(single_type(name=names.GRIPPER_JOINT, cmd=gripper))

    def run_episode(self, seed: int, target: str, instruction: str, trajectory: np.ndarray,
                    bag_dir: Path) -> Tuple[bool, int, Dict[str, int]]:
        leader_topics = names.LEADER_JOINT_STATE_TOPICS
        with self.recorder.recording(bag_dir) as summary:
            self.sim.reset(seed, target)
            # The operator's instruction for this episode, recorded with it (latched, as the policy node does).
            self.instruction_pub.publish(self._string(data=instruction))
            self.wait(lambda: self.recorder.message_counts.get(names.INSTRUCTION_TOPIC, 0) > 0, 5.0,
                      "the recorder to have the instruction")
            for k, action in enumerate(trajectory):
                self.publish_leaders(action)
                self.wait(lambda: all(self.recorder.message_counts.get(t, 0) > k for t in leader_topics), 5.0,
                          "the recorder")
                self.command_followers(action)
                self.wait(lambda: self.sim.steps > k, 20.0, f"simulator step {k + 1}")
            end = time.monotonic() + 0.3  # let the last images and records arrive
            while time.monotonic() < end:
                self.spin(0.02)
        record = self.sim.episode
        return bool(record["success"]), int(record["max_reward"]), summary.message_counts

    def close(self) -> None:
        self.recorder.close()
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.context)


def record_scripted_demos(
    out_dir,
    task: str = "transfer_cube",
    episodes: int = 10,
    first_seed: int = 0,
    seeds: Optional[Sequence[int]] = None,
    image_size: Tuple[int, int] = (96, 128),
    cameras: Sequence[str] = names.CAMERA_NAMES,
    storage: str = "mcap",
    steps: int = EPISODE_STEPS,
    log: Callable[[str], None] = print,
    calibration: Calibration = DEFAULT_CALIBRATION,
) -> List[DemoEpisode]:
    """Run `episodes` scripted episodes (seeds first_seed.., or the given `seeds`) through the
    aloha_sim node and keep one bag per successful episode under out_dir. Returns every attempt."""
    out_dir = Path(out_dir)
    spec = get_task(task)
    if not spec.has_demonstrator:
        raise ValueError(f"no scripted demonstrator for {task!r}")
    seeds = list(range(first_seed, first_seed + episodes)) if seeds is None else [int(s) for s in seeds]
    if not seeds:
        raise ValueError("episodes must be at least 1")
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists already; not overwriting")
    staging = out_dir.with_name(out_dir.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    planner = AlohaSim(task, cameras=())
    sim_params = {
        "task": task,
        "image_height": image_size[0],
        "image_width": image_size[1],
        "cameras": list(cameras),
        "step_timeout_s": 30.0,  # the demonstrator drives every step
        "calibration": calibration.name,
    }
    sim = NodeProcess(
        "aloha_sim",
        node_command("oft_sim", "aloha_sim", "oft_sim.nodes.aloha_sim") + ros_args(sim_params),
        staging / "logs",
    )
    driver = None
    results: List[DemoEpisode] = []
    try:
        driver = _Teleoperation(cameras, storage, calibration)
        driver.sim.wait_until_ready(timeout_s=60.0)
        driver.set_up_followers()
        driver.wait_for_sim_clock(seeds[0])
        for seed in seeds:
            target = spec.default_target(seed)
            instruction = spec.instruction(target)
            trajectory = plan_episode(planner, seed, steps, target)
            bag = staging / f"seed_{seed:06d}"
            started = time.monotonic()
            success, max_reward, counts = driver.run_episode(seed, target, instruction, trajectory, bag)
            episode = DemoEpisode(seed, success, max_reward, len(trajectory), message_counts=counts, target=target,
                                  instruction=instruction)
            if success:
                episode.bag = f"episode_{sum(r.success for r in results):03d}"
                bag.rename(staging / episode.bag)
            else:
                shutil.rmtree(bag)
            results.append(episode)
            log(
                f"seed {seed}: {'success' if success else f'failed (max reward {max_reward})'} "
                f"in {time.monotonic() - started:.1f} s" + (f" -> {episode.bag}" if episode.bag else " (discarded)")
            )
    except BaseException:
        if not sim.alive():
            log(f"aloha_sim exited; its log:\n{sim.log_tail()}")
        raise
    finally:
        if driver is not None:
            driver.close()
        sim.stop()
    summary = {
        "task": task,
        "attempted": len(results),
        "successful": sum(r.success for r in results),
        "image_size": list(image_size),
        "cameras": list(cameras),
        "calibration": calibration.to_dict(),
        "episodes": [asdict(r) for r in results],
    }
    (staging / SUMMARY_FILENAME).write_text(json.dumps(summary, indent=2))
    staging.rename(out_dir)
    return results
