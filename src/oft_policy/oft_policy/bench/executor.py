"""bench_executor: executor tick timing and image-to-command latency, measured on real processes.

For each control rate (default 50 and 100 Hz) and each load (`idle`: the
executor fed synthetic chunks by this process; `under_inference`: the policy
node running a tiny checkpoint on the same machine and feeding it), it starts a
fake robot (oft_policy.testing.fake_robot, with cameras when the policy runs), the
executor node (interbotix backend) and, under inference, the policy node;
waits for warm-up, restarts the executor's statistics (its `~/reset_statistics`
service), runs for `--duration` seconds and reads the executor's diagnostics:
tick period p50/p99/max, missed ticks, and the latency from an observation's
stamp (the oldest camera frame) to the first command that used its chunk, with its
stages (the policy node's receipt, wait, convert, preprocess, forward, publish; the
executor's accept and first command: p50/p95/p99 each).

    bench_executor --duration 60 --json executor_bench.json
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from oft_policy.calibration import DEFAULT_CALIBRATION, convention_record
from oft_policy import names
from oft_policy.processes import ros_args

EXECUTOR = "oft_policy.nodes.executor_node"
POLICY = "oft_policy.nodes.policy_node"
FAKE_ROBOT = "oft_policy.testing.fake_robot"
TINY_CHUNK = 25
TINY_PERIOD_S = 0.02


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench_executor", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of running before measuring")
    parser.add_argument("--rates", default="50,100", help="comma-separated control rates (Hz)")
    parser.add_argument("--skip-inference", action="store_true", help="only the idle configurations")
    parser.add_argument("--checkpoint", default="", help="policy checkpoint (default: a random tiny one)")
    parser.add_argument("--camera-rate", type=float, default=30.0, help="fake camera frame rate (Hz)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads of the policy node")
    parser.add_argument("--realtime-priority", type=int, default=0,
                        help="the executor's realtime_priority parameter (SCHED_FIFO; 0: normal scheduling)")
    parser.add_argument("--json", default="", help="write the results to this JSON file")
    parser.add_argument("--log-dir", default="", help="keep node logs here (default: a temporary dir)")
    return parser.parse_args(argv)


def tiny_checkpoint(directory: Path) -> Path:
    """A random tiny checkpoint whose actions stay inside the vx300s limits."""
    import torch

    from oft_policy.testing.checkpoints import make_tiny_checkpoint
    from oft_policy.normalization import NormalizationStats

    torch.set_num_threads(1)
    samples = np.random.default_rng(0).uniform(-0.3, 0.3, size=(256, len(names.ALOHA_JOINT_NAMES)))
    stats = NormalizationStats.fit(samples, samples, names.ALOHA_JOINT_NAMES,
                                   convention=convention_record(DEFAULT_CALIBRATION))
    return make_tiny_checkpoint(directory / "tiny_checkpoint", stats=stats, chunk_size=TINY_CHUNK,
                                control_period_s=TINY_PERIOD_S)


class BenchNode:
    """This process's ROS side: feeds synthetic chunks, reads diagnostics, calls services."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from oft_msgs.msg import ActionChunk
        from rclpy.executors import SingleThreadedExecutor

        from oft_policy.qos import CHUNK_QOS, STATUS_QOS

        rclpy.init()
        self.node = rclpy.create_node("bench_executor")
        self._lock = threading.Lock()
        self._diagnostics = {}
        self.chunk_pub = self.node.create_publisher(ActionChunk, names.ACTION_CHUNK_TOPIC, CHUNK_QOS)
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS_TOPIC, self._on_diagnostics, STATUS_QOS)
        self._feeder = None
        self._sequence = time.time_ns() // 1000
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_diagnostics(self, msg) -> None:
        with self._lock:
            for status in msg.status:
                self._diagnostics[status.name] = (time.monotonic(), {kv.key: kv.value for kv in status.values})

    def diagnostics(self, name: str, newer_than: float = -1.0, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                entry = self._diagnostics.get(name)
            if entry and entry[0] > newer_than:
                return entry[1]
            time.sleep(0.05)
        raise RuntimeError(f"no diagnostics from {name!r} within {timeout} s")

    def call_trigger(self, service: str, timeout: float = 30.0):
        from std_srvs.srv import Trigger

        return self._call(Trigger, service, Trigger.Request(), timeout)

    def change_state(self, node_name: str, transition_id: int, timeout: float = 120.0) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self._call(ChangeState, f"/{node_name}/change_state", request, timeout).success

    def _call(self, srv_type, service, request, timeout):
        from oft_policy.nodes.services import call_with_deadline

        client = self.node.create_client(srv_type, service)
        try:
            return call_with_deadline(client, request, time.sleep, timeout)  # a thread spins the node
        finally:
            self.node.destroy_client(client)

    def start_feeding(self, period_s: float, rows: int = TINY_CHUNK, every_s: float = 0.25) -> None:
        """Publish a smooth synthetic chunk every `every_s` (the idle load)."""
        from oft_msgs.msg import ActionChunk

        from oft_policy.nodes.conversions import chunk_to_msg
        from oft_policy.runtime.chunks import Chunk

        def feed():
            now = self.node.get_clock().now().nanoseconds * 1e-9
            t = now + period_s * np.arange(rows)
            values = 0.1 * np.sin(2 * np.pi * 0.5 * t)[:, None] * np.ones(len(names.ALOHA_JOINT_NAMES))
            self._sequence += 1
            chunk = Chunk.from_rows(values, names.ALOHA_JOINT_NAMES, self._sequence, now, now, period_s, "synthetic")
            self.chunk_pub.publish(chunk_to_msg(chunk, ActionChunk))

        self._feeder = self.node.create_timer(every_s, feed)

    def stop_feeding(self) -> None:
        if self._feeder is not None:
            self.node.destroy_timer(self._feeder)
            self._feeder = None

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)


def run_configuration(bench: BenchNode, mode: str, rate: float, args, checkpoint, log_dir: Path) -> dict:
    from lifecycle_msgs.msg import Transition

    tag = f"{mode}_{int(rate)}"
    executor_name, policy_name = f"bench_executor_{tag}", f"bench_policy_{tag}"
    inference = mode == "under_inference"
    procs = []

    def spawn(cmd, log_name):
        log = open(log_dir / log_name, "ab")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return procs[-1]

    try:
        robot_cmd = [sys.executable, "-m", FAKE_ROBOT, "--rate", str(max(rate, 50.0))]
        if inference:
            robot_cmd += ["--cameras", ",".join(names.CAMERA_NAMES), "--camera-rate", str(args.camera_rate)]
        spawn(robot_cmd, f"fake_robot_{tag}.log")
        spawn([sys.executable, "-m", EXECUTOR, *ros_args(
            {"control_rate_hz": float(rate), "stats_window_s": float(args.duration) + 5.0,
             "realtime_priority": args.realtime_priority},
            node_name=executor_name)], f"executor_{tag}.log")
        diag_name = f"{executor_name}: executor"
        bench.diagnostics(diag_name, timeout=60.0)
        if inference:
            spawn([sys.executable, "-m", POLICY, *ros_args(
                {"checkpoint_path": str(checkpoint), "instruction": "fold the towel",
                 "torch_threads": args.torch_threads}, node_name=policy_name)], f"policy_{tag}.log")
            for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                if not bench.change_state(policy_name, transition):
                    raise RuntimeError(f"policy node transition {transition} failed (see {log_dir})")
        else:
            bench.start_feeding(1.0 / rate)
        deadline = time.monotonic() + 60.0
        while bench.diagnostics(diag_name).get("state") != "RUNNING":
            if time.monotonic() > deadline:
                raise RuntimeError(f"executor never ran chunks (see {log_dir})")
            time.sleep(0.2)
        time.sleep(args.warmup)
        bench.call_trigger(f"/{executor_name}/reset_statistics")
        started = time.monotonic()
        time.sleep(args.duration)
        values = bench.diagnostics(diag_name, newer_than=started + args.duration, timeout=10.0)
        if inference:
            policy_values = bench.diagnostics(f"{policy_name}: policy", newer_than=started + args.duration, timeout=10.0)
    finally:
        bench.stop_feeding()
        for proc in reversed(procs):
            stop(proc)
    result = {
        "period_ms": {key: float(values[f"tick_period_ms_{key}"]) for key in ("p50", "p99", "max")},
        "missed_ticks": int(values["missed_ticks"]),
    }
    extra = {"tick_samples": int(values["tick_period_samples"])}
    if inference:
        extra["image_to_command_ms"] = {key: float(values[f"obs_to_command_ms_{key}"]) for key in ("p50", "p95", "p99")}
        extra["image_to_command_samples"] = int(values["obs_to_command_samples"])
        extra["stages_ms"] = stage_latencies(policy_values, values)
    return result, extra


def stage_latencies(policy_values: dict, executor_values: dict) -> dict:
    """p50/p95/p99 of each stage from camera stamp to first command: the policy node's stages, then the
    executor's accept and first command (both from the observation stamp)."""
    from oft_policy.nodes.policy_node import STAGES

    stages = {stage: {key: float(policy_values[f"{stage}_ms_{key}"]) for key in ("p50", "p95", "p99")}
              for stage in STAGES}
    for stage, prefix in (("accept", "obs_to_accept"), ("first_command", "obs_to_command")):
        stages[stage] = {key: float(executor_values[f"{prefix}_ms_{key}"]) for key in ("p50", "p95", "p99")}
    return stages


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rates = [float(r) for r in args.rates.split(",") if r]
    modes = ["idle"] + ([] if args.skip_inference else ["under_inference"])
    with tempfile.TemporaryDirectory(prefix="bench_executor_") as tmp:
        log_dir = Path(args.log_dir) if args.log_dir else Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = None
        if "under_inference" in modes:
            checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(Path(tmp))
        bench = BenchNode()
        results = {mode: {} for mode in modes}
        try:
            for mode in modes:
                for rate in rates:
                    print(f"[bench_executor] {mode} at {rate:g} Hz for {args.duration:g} s ...", flush=True)
                    result, extra = run_configuration(bench, mode, rate, args, checkpoint, log_dir)
                    results[mode][f"{rate:g}"] = result
                    print(f"  {json.dumps(result)} {json.dumps(extra)}", flush=True)
                    if "image_to_command_ms" in extra and "image_to_command_ms" not in results:
                        results["image_to_command_ms"] = extra["image_to_command_ms"]  # the first (lowest) rate
                        results["stages_ms"] = extra["stages_ms"]
        finally:
            bench.close()
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
