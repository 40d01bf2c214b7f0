"""policy_node: a managed (lifecycle) node that turns observations into action chunks.

- configure: loads the checkpoint (the transition fails, with the reason logged and
  in diagnostics, if it cannot) and subscribes to the checkpoint's cameras, the
  arms' joint states and the executor's status;
- activate: starts inference; deactivate: stops it; cleanup: unloads the model.
- `instruction` may be set at any time (`ros2 param set`); the next chunk follows it.

A chunk is computed when the executor's queue falls below `queue_low_threshold`
(or at `fixed_rate_hz`), from the newest frame of every camera and the newest
joint state, never from inputs older than `max_input_age_s`. The policy
normalizes proprio with the checkpoint's stats itself (`OFTPolicy.predict`).
The chunk is stamped with the observation time (the oldest camera frame used);
its `start_time` is when it is ready (observation time + input age + inference
latency, plus `start_time_offset_s`), so row 0 runs at the first tick after it
arrives instead of being dropped as overdue. With `inference_delay_steps` D the rows
are timed from the observation instead (`oft_policy.runtime.chunks.chunk_start`): the
chunk runs from D ticks after it, and the rows overdue by then are not sent. A
prefix-conditioned checkpoint (`max_prefix_steps` > 0) is given the actions its earlier
chunks have the arm run in those D - 1 ticks, and continues from them.

Sequence numbers start from the wall clock in microseconds at each activation,
so a restarted policy node continues above its predecessor's numbers and the
executor (which refuses sequences that go backwards) accepts it.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from oft_msgs.msg import ActionChunk, ExecutorStatus
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from oft_policy import names
from oft_policy.calibration import ConventionError
from oft_policy.nodes.conversions import (
    ImageConversionError,
    chunk_to_msg,
    compressed_to_rgb,
    follower_state_reader,
    image_to_rgb,
    seconds_to_time,
    time_to_seconds,
)
from oft_policy.nodes.params import (
    CALIBRATION_PARAMETERS,
    ParamSpec,
    calibration_from_parameters,
    declare_parameters,
    read_parameters,
)
from oft_policy.nodes.spin import spin_until_shutdown
from oft_policy.qos import CHUNK_QOS, INSTRUCTION_QOS, SENSOR_QOS, STATUS_QOS
from oft_policy.runtime.chunks import Chunk, PublishedChunks, chunk_start
from oft_policy.runtime.latency import RollingStats, StageLatency
from oft_policy.runtime.policy_inputs import TRIGGER_MODES, ChunkTrigger, InputBuffer

NODE_NAME = "policy_node"
STAGES = ("receipt", "wait", "convert", "preprocess", "forward", "publish")
"""The policy's latency stages, in /diagnostics as <stage>_ms_p50/p95/p99: camera stamp -> receipt of the
frame (node clock), newest frame's receipt -> inference start, message -> RGB, preprocessing, forward pass,
building and publishing the chunk (wall clock). The executor's diagnostics carry the next two: accept and
first command."""
HALTED = ExecutorStatus.HALTED

POLICY_PARAMETERS = (
    ParamSpec("checkpoint_path", "", "Checkpoint directory to load on configure (weights, config, normalization stats)."),
    ParamSpec("instruction", "", "Language instruction given to the policy; required."),
    ParamSpec("device", "cpu", "Torch device for inference ('cpu', 'cuda', 'cuda:1', ...)."),
    ParamSpec("torch_threads", 0, "CPU threads for torch (0: torch's default)."),
    ParamSpec("trigger", "queue", "When to compute a chunk: 'queue' (executor queue below queue_low_threshold) or 'fixed_rate'."),
    ParamSpec("queue_low_threshold", -1, "queue trigger: request a chunk when ExecutorStatus.queue_depth falls below this; -1: half the chunk size."),
    ParamSpec("fixed_rate_hz", 5.0, "fixed_rate trigger: chunks per second."),
    ParamSpec("max_input_age_s", 0.5, "Inputs (camera frames, joint states) older than this are stale: no chunk is published."),
    ParamSpec("fresh_frames_wait_s", 0.05, "Once a chunk is wanted, wait up to this long for camera frames newer than the request."),
    ParamSpec("executor_confirm_timeout_s", 1.0, "After publishing, wait this long (wall clock) for the executor to report the chunk before requesting again."),
    ParamSpec("executor_timeout_s", 1.0, "Publish nothing while the executor's status has been silent this long (wall clock): no executor, no chunk; publishing resumes with its next status. 0: no limit."),
    ParamSpec("camera_topic_pattern", names.CAMERA_TOPIC_PATTERN, "Image topic of each checkpoint camera; {camera} is its name (the ALOHA stack's realsense topics by default)."),
    ParamSpec("camera_topics", None, "Image topic per checkpoint camera, in the checkpoint's camera order; unset: from camera_topic_pattern.", Parameter.Type.STRING_ARRAY),
    ParamSpec("compressed_images", False, "Subscribe to sensor_msgs/CompressedImage on <camera topic>/compressed instead of raw images."),
    ParamSpec("joint_state_topics", names.FOLLOWER_JOINT_STATE_TOPICS, "sensor_msgs/JointState topic of each follower's driver (9 names, read by name; the gripper observed from left_finger)."),
    *CALIBRATION_PARAMETERS,
    ParamSpec("chunk_topic", names.ACTION_CHUNK_TOPIC, "oft_msgs/ActionChunk output topic."),
    ParamSpec("executor_status_topic", names.EXECUTOR_STATUS_TOPIC, "oft_msgs/ExecutorStatus input topic (queue depth, last accepted sequence)."),
    ParamSpec("start_time_offset_s", 0.0, "Added to the chunk's start_time (e.g. the transport delay to a remote executor); with inference_delay_steps 0 only."),
    ParamSpec("inference_delay_steps", 0, "0: a chunk runs from when it is ready. D >= 1: its rows are timed from the observation (row k due k + 1 ticks after it) and it runs from D ticks after it, the rows overdue by then cut: the latency of the policy in control ticks (under strict lockstep, exactly the simulated inference delay)."),
    ParamSpec("check_rate_hz", 100.0, "Rate at which the node checks whether a chunk is wanted and the inputs are ready."),
    ParamSpec("diagnostics_rate_hz", 1.0, "/diagnostics publish rate."),
)


class PolicyNode(LifecycleNode):
    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        declare_parameters(self, POLICY_PARAMETERS)
        self.policy = None
        self.params: dict = {}
        self.inputs: Optional[InputBuffer] = None
        self.trigger: Optional[ChunkTrigger] = None
        self.inference_ms = RollingStats(1000)
        self.stages = StageLatency(STAGES)
        self._received_wall: dict = {}  # camera -> perf_counter() at the newest frame's arrival
        self.published = PublishedChunks()  # what the executor runs during an inference delay
        self.chunks_published = 0
        self.skipped = 0
        self.last_problem = "not configured"
        self.sequence = 0
        self._input_subscriptions = []
        self._check_timer = None
        self.chunk_pub = None
        self.diag_pub = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS_TOPIC, STATUS_QOS)
        self._diag_timer = self.create_timer(1.0 / self.get_parameter("diagnostics_rate_hz").value,
                                             self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.instruction_pub = self.create_publisher(String, names.INSTRUCTION_TOPIC, INSTRUCTION_QOS)

    def _on_set_parameters(self, parameters):
        """`instruction` may change at any time and applies to the next chunk; other parameters at configure."""
        from rcl_interfaces.msg import SetParametersResult

        for parameter in parameters:
            if parameter.name == "instruction":
                text = parameter.value if isinstance(parameter.value, str) else ""
                if not text.strip():
                    return SetParametersResult(successful=False, reason="instruction must be a non-empty string")
                if self.params:
                    self.params["instruction"] = text
                    self.instruction_pub.publish(String(data=text))
        return SetParametersResult(successful=True)

    # ---- lifecycle ------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # any load or parameter problem fails the transition, with the reason
            self.last_problem = f"configure failed: {exc}"
            self.get_logger().error(self.last_problem)
            self._release()
            return TransitionCallbackReturn.FAILURE
        spec = self.policy.spec
        self.last_problem = "configured, not active"
        self.get_logger().info(
            f"loaded {spec.model_id}: {len(spec.camera_names)} cameras, chunk {spec.chunk_size} x {spec.action_dim}, "
            f"period {spec.control_period_s} s; trigger {self.trigger.mode}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        from oft_policy.checkpoint import load_policy  # torch is imported only by a node that needs it

        p = read_parameters(self, POLICY_PARAMETERS)
        self.params = p
        if not p["checkpoint_path"]:
            raise ValueError("parameter checkpoint_path is empty")
        if not str(p["instruction"]).strip():
            raise ValueError("parameter instruction is empty")
        if p["trigger"] not in TRIGGER_MODES:
            raise ValueError(f"trigger must be one of {TRIGGER_MODES}, got {p['trigger']!r}")
        if p["inference_delay_steps"] < 0:
            raise ValueError(f"inference_delay_steps must be >= 0, got {p['inference_delay_steps']}")
        if p["torch_threads"] > 0:
            import torch

            torch.set_num_threads(int(p["torch_threads"]))
        self.policy = load_policy(p["checkpoint_path"], device=p["device"])
        warm_up_ms = self.policy.warm_up(p["instruction"])
        self.get_logger().info(f"warm-up prediction took {warm_up_ms:.0f} ms")
        spec = self.policy.spec
        camera_topics = p["camera_topics"] or names.camera_topics(spec.camera_names, p["camera_topic_pattern"])
        if len(camera_topics) != len(spec.camera_names):
            raise ValueError(f"{len(camera_topics)} camera_topics for the checkpoint's cameras {list(spec.camera_names)}")
        topics, per_arm = p["joint_state_topics"], len(names.ARM_JOINTS)
        if len(spec.joint_names) != per_arm * len(topics):
            raise ValueError(
                f"the checkpoint's {len(spec.joint_names)} joints do not split into {len(topics)} arms of {per_arm}"
            )
        calibration = calibration_from_parameters(p)
        self.inputs = InputBuffer(spec.camera_names, spec.joint_names, p["max_input_age_s"])
        threshold = p["queue_low_threshold"] if p["queue_low_threshold"] >= 0 else spec.chunk_size // 2
        self.trigger = ChunkTrigger(
            mode=p["trigger"], queue_low_threshold=threshold,
            fixed_period_s=1.0 / p["fixed_rate_hz"] if p["fixed_rate_hz"] > 0 else 0.0,
            confirm_timeout_s=p["executor_confirm_timeout_s"], fresh_wait_s=p["fresh_frames_wait_s"],
            executor_timeout_s=p["executor_timeout_s"],
        )
        compressed = bool(p["compressed_images"])
        for camera, topic in zip(spec.camera_names, camera_topics):
            msg_type, topic = (CompressedImage, f"{topic}/compressed") if compressed else (Image, topic)
            self._input_subscriptions.append(self.create_subscription(
                msg_type, topic, lambda msg, c=camera: self._on_image(c, msg), SENSOR_QOS))
        for i, topic in enumerate(topics):
            reader = follower_state_reader(calibration, i, per_arm)
            self._input_subscriptions.append(self.create_subscription(
                JointState, topic, lambda msg, read=reader: self._on_joint_state(msg, read), SENSOR_QOS))
        self._input_subscriptions.append(self.create_subscription(
            ExecutorStatus, p["executor_status_topic"], self._on_executor_status, STATUS_QOS))
        self.chunk_pub = self.create_lifecycle_publisher(ActionChunk, p["chunk_topic"], CHUNK_QOS)
        self.instruction_pub.publish(String(data=p["instruction"]))  # latched: recordings keep what the robot was told

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.sequence = max(self.sequence, time.time_ns() // 1000)
        self.published.clear()
        self.trigger.restart()
        self._check_timer = self.create_timer(1.0 / self.params["check_rate_hz"], self._on_check)
        self.last_problem = ""
        self.get_logger().info(f"active: computing chunks for {self.params['instruction']!r}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inference()
        self.last_problem = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.last_problem = "not configured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_inference(self) -> None:
        if self._check_timer is not None:
            self.destroy_timer(self._check_timer)
            self._check_timer = None

    def _release(self) -> None:
        self._stop_inference()
        for sub in self._input_subscriptions:
            self.destroy_subscription(sub)
        self._input_subscriptions = []
        if self.chunk_pub is not None:
            self.destroy_lifecycle_publisher(self.chunk_pub)
            self.chunk_pub = None
        self.policy = None

    # ---- inputs ------------------------------------------------------------------------
    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, camera: str, msg) -> None:
        stamp = time_to_seconds(msg.header.stamp)
        self._received_wall[camera] = time.perf_counter()
        self.stages.add("receipt", (self.now_s() - stamp) * 1e3)
        self.inputs.put_image(camera, stamp, msg)
        if self._check_timer is not None:
            self._on_check()  # a fresh frame may complete the observation a wanted chunk waits for

    def _on_joint_state(self, msg: JointState, read) -> None:
        try:
            columns, values = read(msg)
        except ConventionError as exc:
            self.get_logger().warn(f"ignored joint state: {exc}", throttle_duration_sec=2.0)
            return
        self.inputs.put_joints(columns, values, time_to_seconds(msg.header.stamp))

    def _on_executor_status(self, msg: ExecutorStatus) -> None:
        self.trigger.on_executor_status(msg.queue_depth, msg.last_sequence, halted=msg.state == HALTED)

    # ---- inference ------------------------------------------------------------------------
    def _on_check(self) -> None:
        now = self.now_s()
        no_executor = self.trigger.executor_problem()
        if no_executor:
            self._not_publishing("; ".join([no_executor, *self.inputs.problems(now)]))
            return
        if not self.trigger.ready(now, self.inputs):
            return
        problems = self.inputs.problems(now)
        if problems:
            self._skip("; ".join(problems))
            return
        payloads, proprio, stamp = self.inputs.observation()
        started = time.perf_counter()
        cameras = self.policy.spec.camera_names
        try:
            images = {cam: self._to_rgb(payloads[cam]) for cam in cameras}
        except ImageConversionError as exc:
            self._skip(str(exc))
            return
        converted = time.perf_counter()
        timings: dict = {}
        try:
            rows = self.policy.predict(images, self.params["instruction"], proprio, timings=timings,
                                       committed=self._committed(stamp))
        except ValueError as exc:  # inputs the model refuses (e.g. a camera frame it cannot use)
            self._skip(f"the policy refused the observation: {exc}")
            return
        predicted = time.perf_counter()
        inference_ms = (predicted - converted) * 1e3
        self.inference_ms.add(inference_ms)
        self._publish(rows, stamp, inference_ms)
        newest_frame = max(self._received_wall.get(cam, started) for cam in cameras)
        timings.update(wait=(started - newest_frame) * 1e3, convert=(converted - started) * 1e3,
                       publish=(time.perf_counter() - predicted) * 1e3)
        for stage, ms in timings.items():
            self.stages.add(stage, max(0.0, ms))

    def _committed(self, stamp: float) -> Optional[np.ndarray]:
        """For a prefix-conditioned policy with an inference delay D: the actions the executor runs in the
        D - 1 ticks after the observation, from the chunks published before (None: nothing to continue)."""
        spec, delay = self.policy.spec, self.params["inference_delay_steps"]
        count = min(delay - 1, spec.max_prefix_steps)
        if count < 1:
            return None
        return self.published.committed(stamp, spec.control_period_s, count)

    @staticmethod
    def _to_rgb(msg) -> np.ndarray:
        return compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)

    def _skip(self, problem: str) -> None:
        """A wanted chunk not computed: counted."""
        self.skipped += 1
        self._not_publishing(problem)

    def _not_publishing(self, problem: str) -> None:
        self.last_problem = f"not publishing: {problem}"
        self.get_logger().warn(self.last_problem, throttle_duration_sec=2.0)

    def _publish(self, rows: np.ndarray, stamp: float, inference_ms: float) -> None:
        spec = self.policy.spec
        self.sequence += 1
        ready = self.now_s() + self.params["start_time_offset_s"]
        rows, start = chunk_start(rows, stamp, ready, spec.control_period_s, self.params["inference_delay_steps"])
        chunk = Chunk.from_rows(rows, spec.joint_names, self.sequence, stamp, start,
                                spec.control_period_s, spec.model_id, inference_ms)
        msg = chunk_to_msg(chunk, ActionChunk)
        self.chunk_pub.publish(msg)
        self.published.add(chunk)
        self.chunks_published += 1
        self.last_problem = ""
        self.trigger.on_published(self.sequence, self.now_s(), chunk.due_times(), spec.control_period_s)

    # ---- diagnostics ------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = self.now_s()
        stats = self.inference_ms.percentiles((50, 99))
        values = {
            "chunks_published": self.chunks_published,
            "skipped_stale_or_bad_input": self.skipped,
            "inference_ms_p50": stats["p50"],
            "inference_ms_p99": stats["p99"],
            "sequence": self.sequence,
            **{key: round(value, 3) for key, value in self.stages.summary().items()},
        }
        if self.inputs is not None:
            values.update({f"age_s_{name}": age for name, age in self.inputs.ages(now).items()})
        if self.policy is not None:
            values["model_id"] = self.policy.spec.model_id
        level = DiagnosticStatus.WARN if self.last_problem else DiagnosticStatus.OK
        status = DiagnosticStatus(
            level=level, name=f"{self.get_name()}: policy", message=self.last_problem or "publishing chunks",
            hardware_id="oft_policy", values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = seconds_to_time(now)
        self.diag_pub.publish(msg)


def main(args=None) -> int:
    rclpy.init(args=args)
    return spin_until_shutdown(PolicyNode())


if __name__ == "__main__":
    sys.exit(main())
