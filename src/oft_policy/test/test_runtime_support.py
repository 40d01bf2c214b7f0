"""Helpers for the runtime's ROS tests (no tests here).

- `FakeRobot`: runs oft_policy.testing.fake_robot (the emulated xs drivers) as a
  subprocess, sets its offset through stdin and reads the commands it recorded.
- `RosHarness`: an in-process rclpy node on a spinning thread that publishes
  chunks, collects ExecutorStatus / DriftReport / chunks and calls services.
- `start_node` / `stop_process`: node subprocesses, killed by pid.

Test modules import this file by path (pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from oft_policy.processes import ros_args

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# ---- processes ----------------------------------------------------------------------
def start_node(module: str, params: dict, env: dict, log_path: Path, name_args: list = ()) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", module, *ros_args(params), *name_args],  # oft_policy.processes.ros_args
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def stop_process(proc: subprocess.Popen, sig=signal.SIGINT, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def describe_status(status) -> str:
    """An ExecutorStatus in one line, for failure messages."""
    if status is None:
        return "none received"
    states = ("IDLE", "RUNNING", "HOLDING", "HALTED")
    state = states[status.state] if 0 <= status.state < len(states) else str(status.state)
    return (f"{state} ({status.reason or 'no reason'}), ticks {status.ticks}, queue {status.queue_depth}, "
            f"last sequence {status.last_sequence}, rejected {status.rejected_chunks}")


class FakeRobot:
    """The fake robot subprocess; `commands()` reads what it recorded so far."""

    def __init__(self, env: dict, workdir: Path, initial: float = 0.0, cameras: tuple = (), rate_hz: float = 100.0,
                 compressed: bool = False, services: bool = True):
        self.out = workdir / f"fake_robot_{time.monotonic_ns()}.jsonl"
        self.matched_file = self.out.with_suffix(".matched")
        cmd = [sys.executable, "-m", "oft_policy.testing.fake_robot", "--initial", str(initial),
               "--record", str(self.out), "--matched-file", str(self.matched_file), "--rate", str(rate_hz),
               "--camera-rate", "30", "--stdin-control"] + ([] if services else ["--no-services"])
        if cameras:
            cmd += ["--cameras", ",".join(cameras)] + (["--compressed"] if compressed else [])
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=open(workdir / "fake_robot.log", "ab"))

    def set_offset(self, offset: float) -> None:
        self.control(f"offset {offset}")

    def control(self, line: str) -> None:
        """A control line of the fake robot (offset, cameras frozen|stopped|live, joint_states stopped|live)."""
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()

    def commands_matched(self) -> bool:
        """Every command subscription has a matched publisher (the executor's)."""
        return self.matched_file.exists()

    def commands(self) -> list:
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def full_commands(self, arms: int = 2) -> list:
        """(receive time, full command vector in the policy's convention) per control tick. The k-th
        message of each (arm, kind) stream belongs to tick k (every stream gets one message per tick);
        the gripper's radians go back to an opening through the fake robot's calibration (aloha2)."""
        from oft_policy.calibration import DEFAULT_CALIBRATION

        streams = {}
        for record in self.commands():
            streams.setdefault((record["arm"], record["kind"]), []).append(record)
        keys = [(arm, kind) for arm in range(arms) for kind in ("group", "single")]
        count = min((len(streams.get(key, [])) for key in keys), default=0)
        ticks = []
        for k in range(count):
            records = [streams[key][k] for key in keys]
            vector = np.concatenate([r["values"] for r in records]).astype(np.float64)
            grippers = np.arange(6, vector.size, 7)
            # The driver's float32 radians carry the opening to about 1e-7: rounded back to the chunk's values.
            vector[grippers] = np.round(DEFAULT_CALIBRATION.follower_joint.normalize(vector[grippers]), 6)
            ticks.append((max(r["t"] for r in records), vector))
        return ticks

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        stop_process(self.proc)


class RosHarness:
    """An rclpy node in this process, spun on a thread; use as a context manager."""

    def __init__(self, name: str = "runtime_test_harness"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from oft_msgs.msg import ActionChunk, DriftReport, ExecutorStatus
        from oft_policy import names
        from oft_policy.qos import CHUNK_QOS, STATUS_QOS

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        from diagnostic_msgs.msg import DiagnosticArray

        self.statuses, self.drifts, self.chunks, self.diagnostics = [], [], [], []
        self.lock = threading.Lock()
        burst_qos = copy.copy(CHUNK_QOS)
        burst_qos.depth = 2000  # tests publish bursts of chunks; keep every one until delivered
        self.chunk_pub = self.node.create_publisher(ActionChunk, names.ACTION_CHUNK_TOPIC, burst_qos)
        self.node.create_subscription(ExecutorStatus, names.EXECUTOR_STATUS_TOPIC, self._keep(self.statuses), STATUS_QOS)
        self.node.create_subscription(DriftReport, names.DRIFT_TOPIC, self._keep(self.drifts), STATUS_QOS)
        self.node.create_subscription(ActionChunk, names.ACTION_CHUNK_TOPIC, self._keep(self.chunks), CHUNK_QOS)
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS_TOPIC, self._keep(self.diagnostics), STATUS_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # shutdown while spinning
            pass

    def _keep(self, store):
        def callback(msg):
            with self.lock:
                store.append((time.time(), msg))
        return callback

    def now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def publish_chunk(self, rows, sequence: int, start_delay_s: float = 0.05, period_s: float = 0.02,
                      stamp_s: float = None, **overrides):
        """Publish an ActionChunk of `rows` ([N, D]) stamped now (or `stamp_s`); fields overridable."""
        from oft_msgs.msg import ActionChunk

        from oft_policy.names import ALOHA_JOINT_NAMES
        from oft_policy.nodes.conversions import seconds_to_duration, seconds_to_time

        rows = np.asarray(rows, dtype=np.float32)
        now = self.now_s()
        stamp = now if stamp_s is None else stamp_s
        msg = ActionChunk()
        msg.header.stamp = seconds_to_time(stamp)
        msg.sequence = sequence
        msg.joint_names = list(ALOHA_JOINT_NAMES)
        msg.chunk_size = rows.shape[0] if rows.ndim == 2 else 0
        msg.action_dim = rows.shape[1] if rows.ndim == 2 else 0
        msg.actions = rows.reshape(-1)
        msg.period = seconds_to_duration(period_s)
        msg.start_time = seconds_to_time(max(stamp, now + start_delay_s))
        msg.model_id = "test"
        for key, value in overrides.items():
            setattr(msg, key, value)
        self.chunk_pub.publish(msg)
        return msg

    def last_status(self):
        with self.lock:
            return self.statuses[-1][1] if self.statuses else None

    def wait_status(self, predicate, timeout: float, what: str = "executor status"):
        """The first ExecutorStatus that satisfies `predicate`; on timeout the failure says the last one."""
        def check():
            status = self.last_status()
            return status if status is not None and predicate(status) else None
        try:
            return wait_for(check, timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the executor's last status: {describe_status(self.last_status())}") from None

    def chunk_count(self) -> int:
        with self.lock:
            return len(self.chunks)

    def diagnostic(self, name_prefix: str, after: float = 0.0):
        """The newest DiagnosticStatus whose name starts with `name_prefix` (received after `after`, wall
        time), as (status, {key: value})."""
        with self.lock:
            for received, array in reversed(self.diagnostics):
                if received <= after:
                    break
                for status in array.status:
                    if status.name.startswith(name_prefix):
                        return status, {kv.key: kv.value for kv in status.values}
        return None

    def change_state(self, node_name: str, transition_id: int, timeout: float = 60.0) -> bool:
        """Drive a lifecycle transition through the standard ChangeState service."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(ChangeState, f"/{node_name}/change_state", request, timeout).success

    def lifecycle_state(self, node_name: str) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, f"/{node_name}/get_state").current_state.label

    def call(self, srv_type, service: str, request=None, timeout: float = 10.0):
        client = self.node.create_client(srv_type, service)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {service} not available")
            future = client.call_async(request if request is not None else srv_type.Request())
            wait_for(future.done, timeout, what=f"reply of {service}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self):
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=2.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
