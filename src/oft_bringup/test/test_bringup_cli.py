"""`bringup`: its refusals, and real runs of the closed loop on loopback.

The end-to-end run is the documented command (the reference checkpoint, the
simulator standing in for the robot); it must reach the running executor,
stop on SIGINT within a bounded time with status 0, and leave no process of
its own behind. A policy node that cannot configure must end the run with a
non-zero status and say why.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from oft_bringup import bringup, system
from oft_bringup.starting import node_argv
from oft_policy import names

REPO = Path(__file__).resolve().parents[3]
CHECKPOINT = "checkpoints/sim_transfer_cube_tiny"
INSTRUCTION = "pick up the cube with the right arm and hand it over to the left arm"
RUNNING_WITHIN_S = 180.0
STOPPED_WITHIN_S = 40.0
STARTED = re.compile(r"started (\S+) \(pid (\d+),")


@pytest.mark.parametrize("argv,says", [
    (["aloha_oft", "checkpoint:=ck", "cam_high_topic:=/x"], "aloha_oft has no argument cam_high_topic; its arguments: checkpoint,"),
    (["aloha_oft", "instruction:=x"], "aloha_oft needs checkpoint:=..."),
    (["sim_oft", "checkpoint:=ck"], "sim_oft needs instruction:=..."),
    (["sim_oft", "checkpoint:=ck", "instruction:=x", "use_sim:=false"], "sim_oft has no argument use_sim"),
    (["aloha_oft", "checkpoint=ck"], "'checkpoint=ck' is not name:=value"),
    (["aloha_oft", ":=ck"], "':=ck' is not name:=value"),
    (["aloha_sim", "checkpoint:=ck"], "no system 'aloha_sim'; one of: aloha_oft, sim_oft, record"),
    (["aloha_oft", "checkpoint:=ck", "use_sim:=maybe"], "use_sim:=maybe is neither true nor false"),
    (["aloha_oft", "checkpoint:=ck", "control_rate:=fast"], "control_rate:=fast is not a number"),
    (["aloha_oft", "checkpoint:=ck", "camera_topic_pattern:=/cam_high/image_raw"], "must contain {camera}"),
    (["record"], "record needs output:=..."),
])
def test_bringup_refuses_unusable_arguments(argv, says, capsys, tmp_path):
    assert bringup.main([*argv, "--log-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bringup: error: ") and says in error, error
    assert not any(tmp_path.iterdir()), "nothing may start (or be written) for refused arguments"


def test_bringup_shows_the_launch_arguments_and_its_commands(capsys, tmp_path):
    assert bringup.main(["aloha_oft", "--show-args"]) == 0
    shown = capsys.readouterr().out
    for argument in system.aloha_oft().arguments:
        default = "(required)" if argument.default is None else f"(default: {argument.default!r})"
        assert f"  {argument.name} {default}\n      {argument.description}" in shown
    given = {"checkpoint": "ck", "use_sim": "true", "instruction": "transfer the cube"}
    assert bringup.main(["aloha_oft", *(f"{k}:={v}" for k, v in given.items()), "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    expected = system.plan(system.aloha_oft(), given, str(tmp_path)).nodes
    assert printed == [shlex.join(node_argv(node)) for node in expected]


class _LoopWatcher:
    """Counts ExecutorStatus RUNNING reports and action chunks on the suite's topics."""

    def __init__(self, node):
        from oft_msgs.msg import ActionChunk, ExecutorStatus

        from oft_policy.qos import CHUNK_QOS, STATUS_QOS

        self.running = self.chunks = 0
        node.create_subscription(ExecutorStatus, names.EXECUTOR_STATUS_TOPIC, self._on_status, STATUS_QOS)
        node.create_subscription(ActionChunk, names.ACTION_CHUNK_TOPIC, self._on_chunk, CHUNK_QOS)

    def _on_status(self, msg):
        self.running += msg.state == msg.RUNNING

    def _on_chunk(self, msg):
        self.chunks += 1


@pytest.fixture
def run_bringup(ros_env, tmp_path):
    """run_bringup(*arguments) -> Popen of the installed console script; killed at teardown if still running."""
    from oft_policy.processes import node_command

    started = []

    def start(*arguments):
        argv = node_command("oft_bringup", "bringup", "oft_bringup.bringup") + [*arguments, "--log-dir", str(tmp_path / "logs")]
        proc = subprocess.Popen(argv, cwd=REPO, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:  # a failed test: let bringup stop its nodes, then make sure
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOPPED_WITHIN_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in _children(proc.stdout.read() if proc.stdout and not proc.stdout.closed else "").values():
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


def _children(stdout: str) -> dict:
    return {name: int(pid) for name, pid in STARTED.findall(stdout)}


def _alive(pid: int) -> bool:
    """Whether any process of the child's process group (it and what it started) is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}" for log in sorted((tmp_path / "logs").glob("*.log")))


@pytest.mark.slow
def test_bringup_runs_the_simulated_loop_and_stops_on_sigint(run_bringup, tmp_path, spinning_node):
    watcher = _LoopWatcher(spinning_node("bringup_test_watcher"))
    proc = run_bringup("aloha_oft", f"checkpoint:={CHECKPOINT}", f"instruction:={INSTRUCTION}", "device:=cpu", "use_sim:=true")
    deadline = time.monotonic() + RUNNING_WITHIN_S
    while not (watcher.running or watcher.chunks):
        assert proc.poll() is None, f"bringup ended with {proc.returncode}:\n{proc.communicate()}\n{_logs(tmp_path)}"
        assert time.monotonic() < deadline, f"no RUNNING status nor chunk within {RUNNING_WITHIN_S:g} s\n{_logs(tmp_path)}"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=STOPPED_WITHIN_S)
    children = _children(stdout)
    assert set(children) == {"aloha_sim", "executor_node", "policy_node"}, stdout
    assert proc.returncode == 0, f"{stdout}\n{stderr}\n{_logs(tmp_path)}"
    assert "policy_node is active" in stdout
    left = [name for name, pid in children.items() if _alive(pid)]
    assert not left, f"still running after bringup ended: {left}"


@pytest.mark.slow
def test_bringup_ends_when_the_policy_cannot_configure(run_bringup, tmp_path):
    proc = run_bringup("aloha_oft", f"checkpoint:={tmp_path / 'missing'}", "instruction:=transfer the cube",
                       "device:=cpu", "run_executor:=false")
    stdout, stderr = proc.communicate(timeout=RUNNING_WITHIN_S)
    assert proc.returncode == 1, f"{stdout}\n{stderr}"
    assert "policy_node failed to configure" in stderr and "checkpoint" in stderr, stderr
    children = _children(stdout)
    assert set(children) == {"policy_node"} and not _alive(children["policy_node"])


@pytest.mark.slow
def test_bringup_against_the_real_driver_interface_sends_valid_commands_to_both_followers(run_bringup, tmp_path,
                                                                                        ros_env):
    """No simulator: the emulated xs drivers (gripper starting in linear_position, services, commands read
    by mode) and realsense-topic cameras of the fake robot stand for a real ALOHA."""
    import json
    import sys

    from oft_policy.testing.checkpoints import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "tiny", chunk_size=10)
    record = tmp_path / "commands.jsonl"
    robot = subprocess.Popen([sys.executable, "-m", "oft_policy.testing.fake_robot", "--record", str(record),
                              "--cameras", ",".join(names.CAMERA_NAMES), "--initial", "0.2"],
                             env=ros_env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "fake_robot.log", "w"))
    try:
        proc = run_bringup("aloha_oft", f"checkpoint:={checkpoint}", f"instruction:={INSTRUCTION}", "device:=cpu")

        def commands():
            lines = record.read_text().splitlines() if record.exists() else []
            return [json.loads(line) for line in lines if line.endswith("}")]

        deadline = time.monotonic() + RUNNING_WITHIN_S
        while len({(c["arm"], c["kind"]) for c in commands()}) < 4 or len(commands()) < 40:
            assert proc.poll() is None, f"bringup ended with {proc.returncode}:\n{proc.communicate()}\n{_logs(tmp_path)}"
            assert time.monotonic() < deadline, f"no commands on both followers within {RUNNING_WITHIN_S:g} s\n{_logs(tmp_path)}"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=STOPPED_WITHIN_S)
        assert proc.returncode == 0 and set(_children(stdout)) == {"executor_node", "policy_node"}, stdout
    finally:
        robot.send_signal(signal.SIGINT)
        robot.wait(timeout=20)
    sent = commands()
    assert not [c for c in sent if c["refused"]], [c for c in sent if c["refused"]][:3]
    assert {(c["arm"], c["kind"], c["name"]) for c in sent} == {
        (arm, kind, name) for arm in (0, 1) for kind, name in (("group", "arm"), ("single", "gripper"))}
    assert {len(c["values"]) for c in sent if c["kind"] == "group"} == {6}
    assert {c["mode"] for c in sent if c["kind"] == "single"} == {"current_based_position"}
    grippers = [c["values"][0] for c in sent if c["kind"] == "single"]
    assert 0.6197 - 1e-4 <= min(grippers) and max(grippers) <= 1.6214 + 1e-4  # ALOHA 2's follower gripper range
