"""Helpers for oft_sim's ROS tests: start real node processes, always stop them by pid."""

import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.fixture(scope="session")
def console(repo_root):
    """console(package, executable, module) -> argv of the built console script when the
    workspace has it, else of the module it runs."""

    def command(package, executable, module):
        script = repo_root / "install" / package / "lib" / package / executable
        if script.exists():
            return [str(script)]
        return [sys.executable, "-m", module]

    return command


@pytest.fixture
def processes(ros_env, tmp_path):
    """start(name, argv) -> Popen; every process started is stopped at teardown."""
    started = []

    def start(name, argv, env_extra=None):
        env = dict(ros_env)
        env.update(env_extra or {})
        log = open(tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = tmp_path / f"{name}.log"
        started.append((proc, log))
        return proc

    yield start
    for proc, log in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        log.close()


def _wait_for(predicate, timeout_s, spin, poll_s=0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        spin(poll_s)
    return predicate()


@pytest.fixture(scope="session")
def wait_for():
    """wait_for(predicate, timeout_s, spin): spin until predicate() is true or the timeout passes;
    returns the last predicate value."""
    return _wait_for


@pytest.fixture
def probe():
    """(node, spin): a test-side rclpy node in its own context, torn down after the test."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("oft_sim_test_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, lambda seconds: executor.spin_once(timeout_sec=seconds)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
