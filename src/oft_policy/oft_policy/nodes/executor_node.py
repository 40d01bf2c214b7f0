"""executor_node: runs action chunks on the arms at the control rate, safely.

A thin ROS shell over oft_policy.runtime.ExecutorCore: it turns parameters into
the core's parts, joint states and chunks into core inputs, and each tick's
result into arm commands, a DriftReport, ExecutorStatus (10 Hz) and diagnostics.
Chunks, the queue, the limits and drift are in the policy's convention
(oft_policy.calibration); the follower joint states (9 names, robot units) are read
into it, and the backend turns commands back into robot units: the robot boundary.
Nothing is sent until the backend reports the robot set up (interbotix: operating
modes set and confirmed, torque on); until then the status says why.
Ticks come from a timer at the control rate, or (`tick_on_joint_states`) from the
arms' joint states: one tick, at the newest stamp, once every arm has reported a
state at least about one control period newer than the last tick (the driver
publishes at 100 Hz, twice the control rate).
"""

from __future__ import annotations

import copy
import gc
import os
import sys
import time
from typing import List, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from oft_msgs.msg import ActionChunk, DriftReport, ExecutorStatus
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from oft_policy import names
from oft_policy.calibration import ConventionError, check_convention
from oft_policy.nodes.command_backends import BACKEND_PARAMETERS, make_backend
from oft_policy.nodes.conversions import chunk_from_msg, follower_state_reader, seconds_to_time, time_to_seconds
from oft_policy.nodes.params import CALIBRATION_PARAMETERS, ParamSpec, calibration_from_parameters, declare_parameters
from oft_policy.nodes.spin import spin_until_shutdown
from oft_policy.normalization import NormalizationStats
from oft_policy.qos import CHUNK_QOS, SENSOR_QOS, STATUS_QOS
from oft_policy.runtime import (
    CHUNK_POLICIES,
    ActionDriftMonitor,
    ActionQueue,
    ChunkRejected,
    ChunkValidator,
    DriftLevel,
    ExecutorCore,
    ExecutorState,
    JointLimits,
    SafetyFilter,
    TickMonitor,
    drift_scale_from_stats,
    watched_joint_mask,
)

NODE_NAME = "executor_node"

# A burst of chunks (e.g. a policy restarting) must not overflow the reader's history:
# a lost chunk could be the valid one.
CHUNK_BURST_QOS = copy.copy(CHUNK_QOS)
CHUNK_BURST_QOS.depth = 100

EXECUTOR_PARAMETERS = (
    ParamSpec("backend", "interbotix", "Output backend (a name in oft_policy.nodes.command_backends.BACKENDS): 'interbotix', the ALOHA stack's xs drivers."),
    ParamSpec("control_rate_hz", 50.0, "Control tick rate in Hz; one action is executed per tick."),
    ParamSpec(
        "tick_on_joint_states", False,
        "Tick each time every arm has reported a joint state about one control period newer than the last tick "
        "(read, then command, as a ros2_control loop does) instead of on a timer at control_rate_hz; a lockstep "
        "simulator's steps then drive the ticks.",
    ),
    ParamSpec("joint_names", names.ALOHA_JOINT_NAMES, "Action dimensions in chunk column order: 7 per arm (6 joints, then the gripper), arms in joint_state_topics order."),
    ParamSpec("joint_state_topics", names.FOLLOWER_JOINT_STATE_TOPICS, "sensor_msgs/JointState topic of each follower's driver (9 names, read by name; the gripper observed from left_finger)."),
    *CALIBRATION_PARAMETERS,
    *BACKEND_PARAMETERS,
    ParamSpec("chunk_topic", names.ACTION_CHUNK_TOPIC, "oft_msgs/ActionChunk input topic."),
    ParamSpec("chunk_policy", "replace", "How a new chunk merges with queued actions from its start_time on: 'replace' or 'blend'."),
    ParamSpec("blend_weight", 0.5, "blend policy: weight of the new chunk on overlapping steps (old steps get 1 - weight)."),
    ParamSpec("max_chunk_age_s", 1.0, "Chunks whose observation stamp is older than this are rejected."),
    ParamSpec("max_chunk_horizon_s", 5.0, "Chunks whose last action is due later than this after their observation are rejected."),
    ParamSpec("max_future_s", 0.2, "Chunks whose stamp or start_time lie further than this ahead of now are rejected."),
    ParamSpec("limit_margin", 0.25, "Chunks with any action further than this outside the position limits are rejected (closer ones are clamped)."),
    ParamSpec("position_limits_lower", None, "Lower position limit per joint_names entry (rad; grippers normalized, 0 closed); unset: ALOHA vx300s defaults, grippers 0.", Parameter.Type.DOUBLE_ARRAY),
    ParamSpec("position_limits_upper", None, "Upper position limit per joint_names entry (rad; grippers normalized, 1 open); unset: ALOHA vx300s defaults, grippers 1.", Parameter.Type.DOUBLE_ARRAY),
    ParamSpec("velocity_limits", None, "Maximum speed (units/s) per joint_names entry, applied per tick; unset: vx300s default pi rad/s.", Parameter.Type.DOUBLE_ARRAY),
    ParamSpec("stats_path", "", "Checkpoint normalization stats JSON for the drift monitor; empty: normalize by each joint's limit range."),
    ParamSpec("drift_warn_threshold", 0.05, "Drift trend (fraction of each joint's action range) above which the monitor reports WARN."),
    ParamSpec("drift_critical_threshold", 0.15, "Drift trend above which the monitor reports CRITICAL and the executor halts."),
    ParamSpec("drift_joints", None, "Joints whose drift is averaged into the trend; unset: every joint but the grippers (a grasp holds a gripper off its command).", Parameter.Type.STRING_ARRAY),
    ParamSpec("drift_window_ticks", 10, "Ticks in the rolling mean (trend) of the drift."),
    ParamSpec("drift_delay_ticks", 3, "The measured state is compared with the command sent this many ticks earlier."),
    ParamSpec("joint_state_timeout_s", 0.2, "Send nothing once any joint's newest state is older than this (the executor never commands without feedback); 0: no limit."),
    ParamSpec("status_rate_hz", 10.0, "ExecutorStatus publish rate, wall clock (and once on every accepted chunk)."),
    ParamSpec("diagnostics_rate_hz", 1.0, "/diagnostics publish rate."),
    ParamSpec("stats_window_s", 60.0, "Window of the tick-period and observation-to-command statistics in diagnostics."),
    ParamSpec("realtime_priority", 0, "SCHED_FIFO priority (1-99) of the control thread; 0 keeps normal scheduling. Needs CAP_SYS_NICE; if refused, a warning and normal scheduling."),
)


def _limits_from_params(p: dict, joint_names) -> JointLimits:
    given = [p["position_limits_lower"], p["position_limits_upper"], p["velocity_limits"]]
    if all(v is None for v in given):
        return JointLimits.vx300s(joint_names)
    defaults = JointLimits.vx300s(joint_names) if None in given else None
    lower, upper, velocity = (
        value if value is not None else getattr(defaults, attr)
        for value, attr in zip(given, ("lower", "upper", "max_velocity"))
    )
    return JointLimits.create(joint_names, lower, upper, velocity)


class ExecutorNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, EXECUTOR_PARAMETERS)
        self.params = p
        joint_names = tuple(p["joint_names"])
        topics = p["joint_state_topics"]
        per_arm = len(names.ARM_JOINTS)
        if len(joint_names) != len(topics) * per_arm:
            raise ValueError(f"{len(joint_names)} joint_names do not split into {len(topics)} arms of {per_arm} joints")
        if p["chunk_policy"] not in CHUNK_POLICIES:
            raise ValueError(f"chunk_policy must be one of {CHUNK_POLICIES}, got {p['chunk_policy']!r}")
        rate = float(p["control_rate_hz"])
        if not rate > 0:
            raise ValueError(f"control_rate_hz must be positive, got {rate}")
        period = 1.0 / rate
        self.period_s = period
        n = per_arm
        self.arm_columns: List[slice] = [slice(i * n, (i + 1) * n) for i in range(len(topics))]
        self.calibration = calibration_from_parameters(p)
        limits = _limits_from_params(p, joint_names)
        self.core = ExecutorCore(
            joint_names,
            SafetyFilter(limits, period),
            ChunkValidator(joint_names, limits, max_age_s=p["max_chunk_age_s"], max_future_s=p["max_future_s"],
                           limit_margin=p["limit_margin"], max_horizon_s=p["max_chunk_horizon_s"]),
            ActionQueue(period, p["chunk_policy"], p["blend_weight"]),
            ActionDriftMonitor(self._drift_scale(p, joint_names, limits), p["drift_warn_threshold"],
                               p["drift_critical_threshold"], p["drift_window_ticks"], p["drift_delay_ticks"],
                               watched_joint_mask(joint_names, p["drift_joints"])),
            latency_window=max(1, int(p["stats_window_s"] * rate)),
            feedback_timeout_s=p["joint_state_timeout_s"],
        )
        self.ticks = TickMonitor(period, window=max(1, int(p["stats_window_s"] * rate)))
        # Tick periods on the clock the timer follows: wall time, or simulated time under use_sim_time.
        self._tick_clock = self.now_s if self.get_parameter("use_sim_time").value else time.perf_counter
        self.backend = make_backend(self, p, self.arm_columns, self.calibration)
        self.core.block(self.backend.status())
        self._request_realtime(int(p["realtime_priority"]))

        self._tick_on_joint_states = bool(p["tick_on_joint_states"])
        self._arm_stamps: List[Optional[float]] = [None] * len(topics)
        self._last_tick_stamp = -np.inf
        for i, topic in enumerate(topics):
            reader = follower_state_reader(self.calibration, i, per_arm)
            self.create_subscription(
                JointState, topic, lambda msg, read=reader, arm=i: self._on_joint_state(msg, read, arm), SENSOR_QOS)
        self.create_subscription(ActionChunk, p["chunk_topic"], self._on_chunk, CHUNK_BURST_QOS)
        self.drift_pub = self.create_publisher(DriftReport, names.DRIFT_TOPIC, STATUS_QOS)
        self.status_pub = self.create_publisher(ExecutorStatus, names.EXECUTOR_STATUS_TOPIC, STATUS_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS_TOPIC, STATUS_QOS)
        self.create_service(Trigger, "~/resume", self._on_resume)
        self.create_service(Trigger, "~/reset_statistics", self._on_reset_statistics)
        if not self._tick_on_joint_states:
            self.create_timer(period, self._on_tick)
        # Status on the wall clock: it keeps flowing while a lockstep simulator holds sim time.
        self.create_timer(1.0 / p["status_rate_hz"], self._publish_status, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(1.0 / p["diagnostics_rate_hz"], self._publish_diagnostics)
        self.get_logger().info(
            f"{p['backend']} backend at {rate:g} Hz to {', '.join(self.backend.topics())}; "
            f"chunks on {p['chunk_topic']} ({p['chunk_policy']}); calibration {self.calibration.describe()}"
        )

    def _request_realtime(self, priority: int) -> None:
        """Real-time scheduling for this (the spinning, ticking) thread, so other load cannot delay ticks."""
        if priority <= 0:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(min(priority, 99)))
            self.get_logger().info(f"control thread runs SCHED_FIFO priority {min(priority, 99)}")
        except (OSError, AttributeError) as exc:
            self.get_logger().warn(f"realtime_priority {priority} refused ({exc}); normal scheduling")

    def _drift_scale(self, p, joint_names, limits) -> np.ndarray:
        if not p["stats_path"]:
            self.get_logger().info("no stats_path: the drift monitor normalizes by each joint's limit range")
            return limits.span
        stats = NormalizationStats.load(p["stats_path"])
        check_convention(stats.convention, f"statistics {p['stats_path']}")
        self.get_logger().info(f"drift monitor normalizes with the action range of {p['stats_path']}")
        return drift_scale_from_stats(stats, joint_names, limits)

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ---- inputs ----------------------------------------------------------------
    def _on_joint_state(self, msg: JointState, read, arm: int) -> None:
        try:
            columns, values = read(msg)
        except ConventionError as exc:
            self.get_logger().warn(f"ignored joint state of arm {arm}: {exc}", throttle_duration_sec=2.0)
            return
        # Freshness on the clock the ticks follow: the states' own stamps when they drive the ticks.
        stamp = time_to_seconds(msg.header.stamp) if self._tick_on_joint_states else self.now_s()
        self.core.set_measured(columns, values, stamp)
        if self._tick_on_joint_states:
            self._arm_stamps[arm] = stamp
            # States come at twice the control rate: tick on those about one period after the last tick.
            due = self._last_tick_stamp + 0.75 * self.period_s
            if all(s is not None and s >= due for s in self._arm_stamps):
                self._last_tick_stamp = max(self._arm_stamps)
                self._on_tick(self._last_tick_stamp)

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            self.core.submit_chunk(chunk_from_msg(msg), self.now_s())
            self._publish_status()  # the acceptance, at once: the policy and a lockstep simulator wait for it
        except ChunkRejected as exc:
            self.get_logger().warn(
                f"rejected chunk {msg.sequence} ({self.core.rejected_chunks} so far): {exc}", throttle_duration_sec=1.0
            )
        except (ValueError, TypeError) as exc:  # malformed beyond the validator's checks
            self.core.rejected_chunks += 1
            self.get_logger().warn(f"rejected malformed chunk: {exc}", throttle_duration_sec=1.0)

    def _on_resume(self, request, response):
        response.success, response.message = self.core.resume()
        if response.success:
            self.get_logger().info(f"~/resume: {response.message}")
        else:
            self.get_logger().warn(f"~/resume refused: {response.message}")
        return response

    def _on_reset_statistics(self, request, response):
        """Restart the tick-period, missed-tick and observation-to-command statistics (e.g. after warm-up)."""
        self.ticks.reset_statistics()
        self.core.obs_to_command_ms.clear()
        self.core.obs_to_accept_ms.clear()
        response.success, response.message = True, "statistics restarted"
        return response

    # ---- the tick ------------------------------------------------------------------
    def _on_tick(self, stamp: Optional[float] = None) -> None:
        """One control tick: at `stamp` (the joint states' time) when ticking on joint states, else now."""
        self.ticks.on_tick(self._tick_clock() if stamp is None else stamp)
        now = self.now_s() if stamp is None else stamp
        self._follow_backend()
        result = self.core.tick(now)
        if result.command is not None:
            self.backend.send(result.command)
        if result.expired_now:
            self.get_logger().warn(
                f"{self.core.last_expiry} ({self.core.expired_chunks} so far)", throttle_duration_sec=1.0
            )
        if result.drift is not None:
            self._publish_drift(result.drift, now)
            if result.halted_now:
                self.get_logger().error(f"HALTED: {self.core.reason}; call ~/resume to re-arm")
            elif result.drift.level != DriftLevel.OK and result.state != ExecutorState.HALTED:
                self.get_logger().warn(
                    f"drift {result.drift.level.name}: trend {result.drift.trend:.3f}",
                    throttle_duration_sec=0.1,
                )

    def _follow_backend(self) -> None:
        """Block the core while the robot is not set up for our commands; free it once it is."""
        if self.backend.ready:
            if self.core.blocked:
                self.core.unblock()
                self.get_logger().info(f"{self.backend.status()}; executing chunks")
            return
        state = ExecutorState.HALTED if self.backend.failed else ExecutorState.IDLE
        self.core.block(self.backend.status(), state)

    def _publish_drift(self, sample, now: float) -> None:
        monitor = self.core.drift_monitor
        msg = DriftReport(
            level=int(sample.level),
            mean_drift=sample.mean_drift,
            trend=sample.trend,
            per_dim_error=sample.per_dim_error.astype(np.float32),
            worst_dim=sample.worst_dim,
            worst_joint=self.core.joint_names[sample.worst_dim],
            warn_threshold=monitor.warn_threshold,
            critical_threshold=monitor.critical_threshold,
            step=sample.step,
        )
        msg.header.stamp = seconds_to_time(now)
        self.drift_pub.publish(msg)

    # ---- reporting ------------------------------------------------------------------
    def _publish_status(self) -> None:
        self._follow_backend()  # the set-up's progress shows even while no tick runs
        now = self.now_s()
        core = self.core
        msg = ExecutorStatus(
            state=int(core.state),
            queue_depth=len(core.queue),
            oldest_action_age_ms=core.oldest_action_age_ms(now),
            ticks=self.ticks.ticks,
            missed_ticks=self.ticks.missed_ticks,
            rejected_chunks=core.rejected_chunks,
            last_sequence=max(0, core.validator.last_sequence or 0),
            driver_ready=bool(self.backend.ready),
            reason=core.reason,
        )
        msg.header.stamp = seconds_to_time(now)
        self.status_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        core = self.core
        tick = self.ticks.summary()
        latency = core.obs_to_command_ms.percentiles((50, 95, 99))
        accept = core.obs_to_accept_ms.percentiles((50, 95, 99))
        level = {
            ExecutorState.HALTED: DiagnosticStatus.ERROR,
            ExecutorState.IDLE: DiagnosticStatus.WARN,
        }.get(core.state, DiagnosticStatus.OK)
        values = {
            "state": core.state.name,
            "queue_depth": len(core.queue),
            "accepted_chunks": core.accepted_chunks,
            "rejected_chunks": core.rejected_chunks,
            "last_rejection": core.last_rejection,
            "expired_chunks": core.expired_chunks,
            "last_expiry": core.last_expiry,
            "dropped_actions": core.queue.dropped,
            "ticks": self.ticks.ticks,
            "missed_ticks": tick["missed_ticks"],
            "tick_period_ms_p50": tick["period_ms"]["p50"],
            "tick_period_ms_p99": tick["period_ms"]["p99"],
            "tick_period_ms_max": tick["period_ms"]["max"],
            "tick_period_samples": len(self.ticks.periods_ms),
            "obs_to_command_ms_p50": latency["p50"],
            "obs_to_command_ms_p95": latency["p95"],
            "obs_to_command_ms_p99": latency["p99"],
            "obs_to_command_samples": len(core.obs_to_command_ms),
            **{f"obs_to_accept_ms_{key}": value for key, value in accept.items()},
            "drift_trend": core.last_drift.trend if core.last_drift else 0.0,
            "driver_ready": self.backend.ready,
            "driver": self.backend.status(),
            "calibration": self.calibration.describe(),
        }
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: executor",
            message=f"{core.state.name}{': ' + core.reason if core.reason else ''}",
            hardware_id="oft_executor",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = seconds_to_time(self.now_s())
        self.diag_pub.publish(msg)


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        node = ExecutorNode()
    except Exception as exc:  # bad parameters or missing backend package: say why and exit
        print(f"{NODE_NAME}: cannot start: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    # Everything allocated so far lives as long as the node: keep it out of the garbage
    # collector's full passes, which would otherwise walk it while a tick waits.
    return spin_until_shutdown(node, before_spin=gc.freeze)


if __name__ == "__main__":
    sys.exit(main())
