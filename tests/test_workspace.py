"""The workspace builds from its sources, its console scripts install where
`ros2 run` looks, and the suite's messages cross process boundaries intact.

The build goes to a temporary prefix (not the developer's install/), with the
repository's own install/ removed from the environment, so this checks the
sources, not whatever was built before.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.name for p in (REPO / "src").glob("*/package.xml"))
PYTHON_PACKAGES = [p for p in PACKAGES if (REPO / "src" / p / "setup.py").is_file()]


def _env_without_prefix(env: dict, prefix: Path) -> dict:
    """Drop every path under `prefix` from the path-list variables colcon sets."""
    cleaned = dict(env)
    for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "PATH"):
        if var in cleaned:
            kept = [p for p in cleaned[var].split(os.pathsep) if p and not p.startswith(str(prefix))]
            cleaned[var] = os.pathsep.join(kept)
    return cleaned


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory, ros_env) -> Path:
    """`colcon build` of src/ into a temporary prefix; returns its install dir."""
    base = tmp_path_factory.mktemp("ws")
    env = _env_without_prefix(ros_env, REPO / "install")
    result = subprocess.run(
        [
            sys.executable, "-m", "colcon", "build",
            "--base-paths", str(REPO / "src"),
            "--metas", str(REPO / "colcon.meta"),
            "--build-base", str(base / "build"),
            "--install-base", str(base / "install"),
            "--event-handlers", "console_cohesion-", "status-",
            "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}",
        ],
        cwd=base, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return base / "install"


def _console_scripts(package: str) -> list:
    """Console script names declared in a package's setup.py (read, not executed)."""
    tree = ast.parse((REPO / "src" / package / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return [ast.literal_eval(item).split("=")[0].strip() for item in value.elts]
    return []


def test_every_package_is_built(fresh_install):
    for package in PACKAGES:
        assert (fresh_install / package / "share" / package / "package.xml").is_file(), package


@pytest.mark.parametrize("package", PYTHON_PACKAGES)
def test_console_scripts_installed_where_ros2_run_looks(fresh_install, package):
    for script in _console_scripts(package):
        path = fresh_install / package / "lib" / package / script
        assert path.is_file(), f"{package}: console script {script} missing at lib/{package}/{script}"
        assert os.access(path, os.X_OK), f"{path.name} is not executable"


MESSAGE_CODEC = textwrap.dedent(
    """
    # rosidl_runtime_py is not on every install; these two helpers are all the test needs.
    def fill(msg, fields):
        for key, value in fields.items():
            if isinstance(value, dict):
                fill(getattr(msg, key), value)
            else:
                setattr(msg, key, value)
        return msg

    def to_dict(msg):
        out = {}
        for key in msg.get_fields_and_field_types():
            value = getattr(msg, key)
            if hasattr(value, "get_fields_and_field_types"):
                out[key] = to_dict(value)
            elif isinstance(value, (str, int, float, bool)):
                out[key] = value
            else:
                out[key] = list(value)
        return out
    """
)

PUBLISHER = MESSAGE_CODEC + textwrap.dedent(
    """
    import json, sys, time
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
    from oft_msgs.msg import ActionChunk, DriftReport, ExecutorStatus

    payload = json.load(open(sys.argv[1]))
    rclpy.init()
    node = rclpy.create_node("roundtrip_publisher")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    types = {"ActionChunk": ActionChunk, "DriftReport": DriftReport, "ExecutorStatus": ExecutorStatus}
    pubs = []
    for name, fields in payload.items():
        msg = types[name]()
        fill(msg, fields)
        pub = node.create_publisher(types[name], "/roundtrip/" + name, qos)
        pub.publish(msg)
        pubs.append(pub)
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:  # stay alive for late-joining subscribers
        rclpy.spin_once(node, timeout_sec=0.1)
    rclpy.shutdown()
    """
)

SUBSCRIBER = MESSAGE_CODEC + textwrap.dedent(
    """
    import json, sys, time
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
    from oft_msgs.msg import ActionChunk, DriftReport, ExecutorStatus

    rclpy.init()
    node = rclpy.create_node("roundtrip_subscriber")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    received = {}
    for name, cls in {"ActionChunk": ActionChunk, "DriftReport": DriftReport, "ExecutorStatus": ExecutorStatus}.items():
        node.create_subscription(cls, "/roundtrip/" + name,
                                 lambda m, n=name: received.setdefault(n, to_dict(m)), qos)
    deadline = time.monotonic() + float(sys.argv[2])
    while len(received) < 3 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    json.dump(received, open(sys.argv[1], "w"))
    rclpy.shutdown()
    """
)


def _payload() -> dict:
    from oft_policy.names import ALOHA_JOINT_NAMES

    chunk = [round(0.001 * i - 0.2, 3) for i in range(25 * 14)]  # exactly representable enough in float32
    return {
        "ActionChunk": {
            "header": {"stamp": {"sec": 12, "nanosec": 345}, "frame_id": "obs"},
            "sequence": 2**40 + 7,
            "joint_names": list(ALOHA_JOINT_NAMES),
            "chunk_size": 25,
            "action_dim": 14,
            "actions": chunk,
            "period": {"sec": 0, "nanosec": 20_000_000},
            "start_time": {"sec": 12, "nanosec": 60_000_345},
            "inference_ms": 41.5,
            "model_id": "sha256:abc123",
        },
        "DriftReport": {
            "header": {"stamp": {"sec": 3, "nanosec": 4}, "frame_id": ""},
            "level": 2,
            "mean_drift": 0.25,
            "trend": 0.125,
            "per_dim_error": [0.5] * 14,
            "worst_dim": 13,
            "worst_joint": "right_gripper",
            "warn_threshold": 0.05,
            "critical_threshold": 0.15,
            "step": 2**33,
        },
        "ExecutorStatus": {
            "header": {"stamp": {"sec": 5, "nanosec": 6}, "frame_id": ""},
            "state": 3,
            "queue_depth": 17,
            "oldest_action_age_ms": 12.5,
            "ticks": 2**35,
            "missed_ticks": 2,
            "rejected_chunks": 9,
            "last_sequence": 2**40 + 7,
            "driver_ready": True,
            "reason": "drift CRITICAL on right_gripper",
        },
    }


def _assert_same(sent, got, path=""):
    if isinstance(sent, dict):
        assert set(sent) == set(got), f"{path}: fields {sorted(got)} != {sorted(sent)}"
        for key in sent:
            _assert_same(sent[key], got[key], f"{path}.{key}")
    elif isinstance(sent, list):
        assert len(sent) == len(got), f"{path}: length {len(got)} != {len(sent)}"
        for i, (a, b) in enumerate(zip(sent, got)):
            _assert_same(a, b, f"{path}[{i}]")
    elif isinstance(sent, float):
        assert got == pytest.approx(sent, rel=1e-6, abs=1e-6), f"{path}: {got} != {sent}"
    else:
        assert got == sent, f"{path}: {got!r} != {sent!r}"


def test_messages_round_trip_between_processes(fresh_install, tmp_path, ros_env):
    payload = _payload()
    (tmp_path / "payload.json").write_text(json.dumps(payload))
    (tmp_path / "pub.py").write_text(PUBLISHER)
    (tmp_path / "sub.py").write_text(SUBSCRIBER)
    env = _env_without_prefix(ros_env, REPO / "install")
    source = f"source {fresh_install / 'setup.bash'} && exec {sys.executable}"
    received_path = tmp_path / "received.json"
    subscriber = subprocess.Popen(["bash", "-c", f"{source} sub.py {received_path} 30"], cwd=tmp_path, env=env)
    publisher = subprocess.Popen(["bash", "-c", f"{source} pub.py payload.json 30"], cwd=tmp_path, env=env)
    try:
        subscriber.wait(timeout=60)
    finally:
        for proc in (publisher, subscriber):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
    received = json.loads(received_path.read_text())
    assert set(received) == set(payload), f"received only {sorted(received)}"
    for name, fields in payload.items():
        _assert_same(fields, json.loads(json.dumps(received[name])), name)
    assert len(received["ActionChunk"]["actions"]) == 25 * 14


def test_message_constants():
    from oft_msgs.msg import DriftReport, ExecutorStatus

    assert (DriftReport.OK, DriftReport.WARN, DriftReport.CRITICAL) == (0, 1, 2)
    assert (ExecutorStatus.IDLE, ExecutorStatus.RUNNING, ExecutorStatus.HOLDING, ExecutorStatus.HALTED) == (0, 1, 2, 3)
