"""The closed loop through the real nodes: aloha_sim, policy_node and executor_node as
separate processes on sim time, driven episode by episode over ROS by an observer node.

Per episode: stop the executor, deactivate the policy (no chunk from the previous
episode's images can arrive), reset the simulator with the seed, start a fresh
executor (its first command equals the measured start pose), activate the policy,
then let it run until the task succeeds or `max_steps` control steps pass.
Strict lockstep (see `oft_sim.lockstep.ChunkCoverage`): the policy asks for a chunk
once `execute_steps` actions of the current one have run, counting the queue itself, and
the simulator holds sim time at exactly that step until the executor has accepted the
new chunk. Inference takes `inference_delay_steps` D control ticks of sim time (the policy
node's parameter of that name, default 1): the rows of a chunk observed at step t are
timed from t (row k due at t+k+1), the executor runs the actions it already holds until
t+D, and the chunk takes over from t+D, its rows overdue by then cut. D = 1 is a policy
that answers within a tick; a 7B policy at 50 Hz is about D = 16. So every chunk is
computed from the same sim state whatever the machine's speed, and a rerun gives the same
episodes. `--realtime` paces to the wall clock instead.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from oft_policy import names
from oft_policy.checkpoint import read_config
from oft_policy.nodes.conversions import chunk_from_msg, time_to_nanoseconds
from oft_policy.normalization import STATS_FILENAME
from oft_sim.evaluation import ChunkSeams, DriftTrace, EpisodeOutcome, ImageToCommandLatency
from oft_policy.processes import NodeProcess, node_command, ros_args
from oft_policy.runtime.action_queue import CHUNK_POLICIES
from oft_policy.runtime.chunks import start_lead_limit
from oft_sim.simulator import CONTROL_PERIOD_S
from oft_sim.tasks import get_task
from oft_policy.nodes.services import call_with_deadline

CHUNK_TIMEOUT_S = 60.0  # the simulator steps without a chunk only if the policy is this late (wall time)
CONFIRM_TIMEOUT_S = 5.0  # wall seconds the policy waits for the executor to confirm a chunk before a retry
LOCKSTEP_INFERENCE_DELAY_STEPS = 1  # a policy that answers within one control tick
DEFAULT_BLEND_WEIGHT = 0.7  # LeRobot's async inference: 0.3 old, 0.7 new
DEFAULT_INSTRUCTION = get_task("transfer_cube").instruction()
DEFAULT_IMAGE_SIZE = (96, 128)  # (height, width) for checkpoints that do not say what they were trained on
POLICY_NODE = "policy_node"


def checkpoint_chunk_size(checkpoint) -> int:
    return read_config(checkpoint).chunk_size


def checkpoint_camera_shape(checkpoint) -> Optional[Tuple[int, int]]:
    """[height, width] the checkpoint's training images were recorded at, if its trainer noted it."""
    shapes = read_config(checkpoint).extra.get("camera_shapes") or {}
    distinct = {tuple(shape) for shape in shapes.values()}
    return distinct.pop() if len(distinct) == 1 else None


def render_size(checkpoint, height: Optional[int] = None, width: Optional[int] = None) -> Tuple[int, int]:
    """Camera resolution to render at: as asked, else what the checkpoint was trained on, else
    DEFAULT_IMAGE_SIZE (checkpoints that do not say)."""
    trained = checkpoint_camera_shape(checkpoint) or DEFAULT_IMAGE_SIZE
    return (height or trained[0], width or trained[1])


def add_execute_steps_argument(parser) -> None:
    """`--execute-steps` (actions run per chunk), shared by evaluate and probe_policy; the old `--chunk-size`
    read as the model's chunk size, so it is refused with the new name."""
    import argparse

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error("--chunk-size is now --execute-steps (actions executed per chunk, not the model's chunk size)")

    parser.add_argument("--execute-steps", type=int,
                        help="execute this many actions of each chunk before the next one replaces it (default: half the chunk)")
    parser.add_argument("--chunk-size", action=Renamed, help=argparse.SUPPRESS)


def add_chunk_timing_arguments(parser) -> None:
    """How chunks meet in the closed loop: `--execute-steps`, `--inference-delay-steps`, `--chunk-policy`,
    `--blend-weight` (evaluate and sim_demo)."""
    add_execute_steps_argument(parser)
    parser.add_argument("--inference-delay-steps", type=int,
                        help="control ticks of sim time a chunk's inference takes under strict lockstep (default "
                             f"{LOCKSTEP_INFERENCE_DELAY_STEPS}); the arm runs the actions it holds meanwhile")
    parser.add_argument("--chunk-policy", choices=CHUNK_POLICIES, default="replace",
                        help="how the executor merges a new chunk with the actions it holds: replace them, or blend "
                             "the overlapping steps (default replace)")
    parser.add_argument("--blend-weight", type=float, default=DEFAULT_BLEND_WEIGHT,
                        help=f"--chunk-policy blend: weight of the new chunk (default {DEFAULT_BLEND_WEIGHT}, as LeRobot's "
                             "async inference)")


def chunk_timing_settings(args) -> dict:
    """The LoopSettings fields of add_chunk_timing_arguments' flags."""
    return {"execute_steps": args.execute_steps, "inference_delay_steps": args.inference_delay_steps,
            "chunk_policy": args.chunk_policy, "blend_weight": args.blend_weight}


def executed_per_chunk(checkpoint, requested: Optional[int] = None) -> int:
    """Actions of each chunk run before the next one replaces it: as asked, else half the chunk."""
    chunk_size = checkpoint_chunk_size(checkpoint)
    execute_steps = requested or max(1, chunk_size // 2)
    if not 1 <= execute_steps <= chunk_size:
        raise ValueError(f"--execute-steps {execute_steps} must be between 1 and the checkpoint's chunk size {chunk_size}")
    return execute_steps


@dataclass
class LoopSettings:
    checkpoint: Path
    task: str = "transfer_cube"
    instruction: Optional[str] = None  # None: the task's instruction for each episode's target
    image_size: Tuple[int, int] = (96, 128)
    max_steps: int = 400
    execute_steps: Optional[int] = None  # actions executed per chunk before the next is requested (None: half)
    inference_delay_steps: Optional[int] = None  # None: LOCKSTEP_INFERENCE_DELAY_STEPS, or the real latency (realtime)
    chunk_policy: str = "replace"
    blend_weight: float = DEFAULT_BLEND_WEIGHT
    realtime: bool = False
    torch_threads: int = 1
    drift_critical_threshold: Optional[float] = None  # None: the executor's default
    log_dir: Path = Path("evaluate_logs")
    episode_timeout_s: float = 600.0


@dataclass
class LoopRecord:
    """What the observer saw over all episodes."""

    latency: ImageToCommandLatency = field(default_factory=ImageToCommandLatency)
    # Per episode: DriftReport stamps (executor ticks, sim time) and arrival of left-arm commands (wall).
    tick_stamps_s: List[List[float]] = field(default_factory=list)
    chunks: List[list] = field(default_factory=list)  # per episode, every chunk of it (oft_policy Chunk)
    command_wall_s: List[List[float]] = field(default_factory=list)
    drift: List[DriftTrace] = field(default_factory=list)
    # The recorded episode: per stamp (ns) each camera's frame, and the simulator's (step, reward).
    frames: Dict[int, Dict[str, np.ndarray]] = field(default_factory=dict)
    frame_labels: Dict[int, Tuple[int, float]] = field(default_factory=dict)

    def seams(self, joint_names, policy: str, blend_weight: float) -> dict:
        """ChunkSeams over every episode: the executor's queue replayed up to each episode's last tick."""
        meter = ChunkSeams(joint_names, CONTROL_PERIOD_S, policy, blend_weight)
        for chunks, ticks in zip(self.chunks, self.tick_stamps_s):
            meter.add_episode(chunks, max(ticks) if ticks else None)
        return meter.summary()

    def period_errors_ms(self, realtime: bool) -> List[float]:
        """Executor tick period error: wall-clock command spacing in realtime mode, else the
        spacing of the ticks' sim-time stamps (nonzero only for missed or doubled ticks)."""
        episodes = self.command_wall_s if realtime else self.tick_stamps_s
        gaps = np.concatenate([np.diff(series) for series in episodes]) if episodes else np.zeros(0)
        return list(np.abs(gaps - CONTROL_PERIOD_S) * 1e3)


class ClosedLoop:
    def __init__(self, settings: LoopSettings, log: Callable[[str], None] = print):
        import rclpy

        self.settings = settings
        self.log = log
        self.record = LoopRecord()
        self._rclpy = rclpy
        self._executor_proc: Optional[NodeProcess] = None
        self._policy_proc: Optional[NodeProcess] = None
        self._sim_proc: Optional[NodeProcess] = None
        self._episode_start_ns: Optional[int] = None
        self._recording_frames = False
        self._trace: Optional[DriftTrace] = None
        self._commands = 0
        self._chunks = 0
        self._first_chunk_step: Optional[int] = None
        self._executor_seen = False
        self._halted = ""
        self._policy_active = False
        self.task = get_task(settings.task)
        self._instruction = settings.instruction or self.task.instruction(self.task.targets[0])
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # children inherit it
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self._make_observer()

    # --- set-up ----------------------------------------------------------------------------------

    def _make_observer(self) -> None:
        from oft_msgs.msg import ActionChunk, DriftReport, ExecutorStatus
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from interbotix_xs_msgs.msg import JointGroupCommand
        from sensor_msgs.msg import Image

        from oft_policy.qos import SENSOR_QOS, STATUS_QOS
        from oft_sim.sim_client import SimClient

        self.node = Node(
            "oft_evaluate",
            context=self.context,
            parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)],
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.sim = SimClient(self.node, self.spin)
        for camera in names.CAMERA_NAMES:
            self.node.create_subscription(Image, names.camera_topic(camera), lambda m, c=camera: self._on_image(c, m),
                                          SENSOR_QOS)
        self.node.create_subscription(ActionChunk, names.ACTION_CHUNK_TOPIC, self._on_chunk, STATUS_QOS)
        self.node.create_subscription(DriftReport, names.DRIFT_TOPIC, self._on_drift, STATUS_QOS)
        self.node.create_subscription(ExecutorStatus, names.EXECUTOR_STATUS_TOPIC, self._on_status, STATUS_QOS)
        self.node.create_subscription(
            JointGroupCommand, f"/{names.FOLLOWER_ROBOTS[0]}/{names.INTERBOTIX_GROUP_COMMAND_TOPIC}", self._on_command,
            STATUS_QOS,
        )

    def start(self) -> None:
        s = self.settings
        stats = Path(s.checkpoint) / STATS_FILENAME
        if not stats.is_file():
            raise FileNotFoundError(f"{s.checkpoint} has no {STATS_FILENAME}: not a checkpoint")
        execute_steps = executed_per_chunk(s.checkpoint, s.execute_steps)
        sim_params = {
            "task": s.task,
            "image_height": s.image_size[0],
            "image_width": s.image_size[1],
            "realtime": s.realtime,
            "wait_for_chunks": not s.realtime,
            "chunk_hold_steps": execute_steps,
            "chunk_ack_from_executor": True,
            "chunk_timeout_s": CHUNK_TIMEOUT_S,
        }
        self._sim_proc = self._start("aloha_sim", "oft_sim", "oft_sim.nodes.aloha_sim", sim_params)
        self.sim.wait_until_ready(timeout_s=120.0)
        policy_params = {
            "checkpoint_path": str(Path(s.checkpoint).resolve()),
            "instruction": self._instruction,
            "use_sim_time": True,
            "torch_threads": s.torch_threads,
            # Request the next chunk once `execute_steps` actions of the current one have run.
            "queue_low_threshold": checkpoint_chunk_size(s.checkpoint) - execute_steps + 1,
        }
        delay = self.inference_delay_steps()
        if delay:
            policy_params["inference_delay_steps"] = delay
        if not s.realtime:
            # A retry is computed from whatever step the simulator is at, so only a chunk that is really
            # lost (discovery at an episode's start, while the simulator holds) may be asked for again;
            # a confirmation merely delayed by a loaded machine must not trigger one.
            policy_params["executor_confirm_timeout_s"] = CONFIRM_TIMEOUT_S
        self._policy_proc = self._start("policy_node", "oft_policy", "oft_policy.nodes.policy_node", policy_params)
        self._lifecycle("configure", timeout_s=300.0)

    def inference_delay_steps(self) -> int:
        """Control ticks between an observation and its chunk's first executable row (0: when it is ready)."""
        s = self.settings
        delay = s.inference_delay_steps
        if delay is None:
            return 0 if s.realtime else LOCKSTEP_INFERENCE_DELAY_STEPS
        chunk_size = checkpoint_chunk_size(s.checkpoint)
        if not (0 if s.realtime else 1) <= delay <= chunk_size:
            raise ValueError(f"--inference-delay-steps {delay} must be between 1 and the checkpoint's chunk size {chunk_size}")
        return delay

    def _start(self, name: str, package: str, module: str, params: dict) -> NodeProcess:
        argv = node_command(package, name, module) + ros_args(params)
        return NodeProcess(name, argv, self.settings.log_dir)

    def _lifecycle(self, transition: str, timeout_s: float = 30.0) -> None:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {
            "configure": Transition.TRANSITION_CONFIGURE,
            "activate": Transition.TRANSITION_ACTIVATE,
            "deactivate": Transition.TRANSITION_DEACTIVATE,
        }
        client = self.node.create_client(ChangeState, f"/{POLICY_NODE}/change_state")
        try:
            request = ChangeState.Request(transition=Transition(id=ids[transition]))
            # Up to 120 s for the service to appear (a loaded machine starting the node), then the transition.
            result = call_with_deadline(client, request, self._spin_watching(self._policy_proc), 120.0 + timeout_s)
            if not result.success:
                raise RuntimeError(
                    f"policy_node refused to {transition}; its log:\n{self._policy_proc.log_tail()}"
                )
        finally:
            self.node.destroy_client(client)

    # --- episodes --------------------------------------------------------------------------------

    def episode_target(self, seed: int, swap: bool = False) -> str:
        """What the seed's instruction names: the task's default for it, or (swap) the other choice."""
        target = self.task.default_target(seed)
        if swap:
            others = [t for t in self.task.targets if t != target]
            if not others:
                raise ValueError(f"task {self.task.name} has nothing to name in its instruction but {target!r}")
            target = others[seed % len(others)]
        return target

    def _instruct(self, instruction: str) -> None:
        """Set the policy node's instruction; its next chunk follows it."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        if instruction == self._instruction:
            return
        client = self.node.create_client(SetParameters, f"/{POLICY_NODE}/set_parameters")
        try:
            value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=instruction)
            request = SetParameters.Request(parameters=[Parameter(name="instruction", value=value)])
            result = call_with_deadline(client, request, self._spin_watching(self._policy_proc), 30.0)
        finally:
            self.node.destroy_client(client)
        if not result.results[0].successful:
            raise RuntimeError(f"policy_node refused the instruction {instruction!r}: {result.results[0].reason}")
        self._instruction = instruction

    def run_episode(self, seed: int, record_video: bool = False, target: Optional[str] = None) -> EpisodeOutcome:
        """One episode; `target` is what its instruction names (None: the seed's default)."""
        s = self.settings
        target = self.episode_target(seed) if target is None else target
        instruction = s.instruction or self.task.instruction(target)
        self._episode_start_ns = None  # until the reset, every chunk belongs to the previous episode
        self._stop_executor()
        if self._policy_active:
            self._lifecycle("deactivate")
            self._policy_active = False
        self._instruct(instruction)  # while inactive: no chunk of the previous instruction follows
        record = self.sim.reset(seed, target)
        self._episode_start_ns = record["sim_time_ns"]
        self._trace = DriftTrace(seed)
        self.record.drift.append(self._trace)
        self._recording_frames = record_video
        self._commands = self._chunks = 0
        self._first_chunk_step = None
        self._executor_seen = False
        self._halted = ""
        self.record.latency.clear_pending()
        latency_before = len(self.record.latency.samples_ms)
        self.record.tick_stamps_s.append([])
        self.record.chunks.append([])
        self.record.command_wall_s.append([])
        executor_params = {
            "backend": "interbotix",
            "use_sim_time": True,
            "stats_path": str(Path(s.checkpoint).resolve() / STATS_FILENAME),
            # Lockstep: the simulator's steps drive the ticks, each with that step's joint states.
            "tick_on_joint_states": not s.realtime,
            "chunk_policy": s.chunk_policy,
            "blend_weight": float(s.blend_weight),
            # A chunk arrives D ticks of sim time early under lockstep: its start may lie that far ahead.
            "max_future_s": start_lead_limit(self.inference_delay_steps(), CONTROL_PERIOD_S),
        }
        if s.drift_critical_threshold is not None:
            executor_params["drift_critical_threshold"] = float(s.drift_critical_threshold)
        self._executor_proc = self._start("executor_node", "oft_policy", "oft_policy.nodes.executor_node", executor_params)
        self._wait(lambda: self._executor_seen, 120.0, "the executor node to set up the follower drivers",
                   self._executor_proc)
        # Its chunk subscription discovered too (observer, executor, and the simulator in lockstep), or
        # the first chunk may be published before the executor can receive it and wait for a retry.
        readers = 2 if s.realtime else 3
        self._wait(lambda: self.node.count_subscribers(names.ACTION_CHUNK_TOPIC) >= readers, 30.0,
                   "the executor's chunk subscription", self._executor_proc)
        self._lifecycle("activate")
        self._policy_active = True
        started = time.monotonic()
        # The step budget starts with the policy's first chunk: until then the arms hold the
        # start pose while the executor and policy come up, however long that takes here.
        self._wait(
            lambda: self.sim.success
            or bool(self._halted)
            or (self._first_chunk_step is not None and self.sim.steps - self._first_chunk_step >= s.max_steps),
            s.episode_timeout_s,
            f"episode seed {seed}",
            self._executor_proc,
        )
        self._recording_frames = False
        episode = self.sim.episode
        return EpisodeOutcome(
            seed=seed,
            success=bool(episode["success"]),
            max_reward=int(episode["max_reward"]),
            steps=int(episode["step"]) - (self._first_chunk_step or 0),
            wall_s=round(time.monotonic() - started, 2),
            commands=self._commands,
            chunks=self._chunks,
            halted=self._halted,
            image_to_command_max_ms=round(max(self.record.latency.samples_ms[latency_before:], default=0.0), 1),
            target=target,
            grasped=episode.get("grasped") or "",
            instruction=instruction,
        )

    # --- observer callbacks ----------------------------------------------------------------------

    def _on_image(self, camera: str, msg) -> None:
        stamp_ns = time_to_nanoseconds(msg.header.stamp)
        if camera == names.CAMERA_NAMES[0]:
            self.record.latency.on_image(stamp_ns, time.monotonic())
        if self._recording_frames:
            frame = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.width, 3)
            self.record.frames.setdefault(stamp_ns, {}).setdefault(camera, frame.copy())  # a held sim repeats frames
            episode = self.sim.episode or {}
            if episode.get("sim_time_ns") == stamp_ns:
                self.record.frame_labels[stamp_ns] = (int(episode["step"]), float(episode["reward"]))

    def _on_chunk(self, msg) -> None:
        stamp_ns = time_to_nanoseconds(msg.header.stamp)
        if self._episode_start_ns is None or stamp_ns < self._episode_start_ns:
            return  # computed in the previous episode, delivered late
        self._chunks += 1
        if self.record.chunks:
            self.record.chunks[-1].append(chunk_from_msg(msg))
        if self._first_chunk_step is None or stamp_ns == self._episode_start_ns:
            # Computed from the image taken at the reset, which waited while the executor and the
            # policy started (a retry of it too): start-up time, not control latency.
            if self._first_chunk_step is None:
                self._first_chunk_step = self.sim.steps
            return
        self.record.latency.on_chunk(stamp_ns)

    def _on_command(self, msg) -> None:
        now = time.monotonic()
        self._commands += 1
        if self.record.command_wall_s:
            self.record.command_wall_s[-1].append(now)
        self.record.latency.on_command(now)

    def _on_drift(self, msg) -> None:
        stamp_ns = time_to_nanoseconds(msg.header.stamp)
        if self.record.tick_stamps_s:
            self.record.tick_stamps_s[-1].append(stamp_ns * 1e-9)
        if self._trace is not None and self._episode_start_ns is not None:
            self._trace.add((stamp_ns - self._episode_start_ns) * 1e-9, msg.trend, msg.warn_threshold, msg.critical_threshold)

    def _on_status(self, msg) -> None:
        self._executor_seen = self._executor_seen or bool(msg.driver_ready)
        if msg.state == msg.HALTED and not self._halted:
            self._halted = msg.reason or "halted"  # the episode ends: only ~/resume would re-arm it

    # --- plumbing --------------------------------------------------------------------------------

    def spin(self, seconds: float) -> None:
        self.executor.spin_once(timeout_sec=seconds)

    def _wait(self, predicate, timeout_s: float, what: str, process: Optional[NodeProcess] = None) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            self._check_alive(what, process)
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.spin(0.01)

    def _check_alive(self, what: str, process: Optional[NodeProcess]) -> None:
        for proc in (self._sim_proc, process):
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{proc.name} exited while waiting for {what}; its log:\n{proc.log_tail()}")

    def _spin_watching(self, process: NodeProcess):
        """A spin for call_with_deadline that stops, with the log, once the simulator or `process` exits."""
        def spin(seconds: float) -> None:
            self._check_alive(f"a service of {process.name}", process)
            self.spin(seconds)

        return spin

    def _stop_executor(self) -> None:
        if self._executor_proc is not None:
            self._executor_proc.stop()
            self._executor_proc = None

    def close(self) -> None:
        self._stop_executor()
        for proc in (self._policy_proc, self._sim_proc):
            if proc is not None:
                proc.stop()
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.context)
