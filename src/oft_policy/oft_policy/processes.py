"""Start the suite's nodes as real processes (as `ros2 run` would) and stop them by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks stop the node processes we started
    (they run in their own sessions and would otherwise outlive a terminated parent)."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def node_command(package: str, executable: str, module: str) -> List[str]:
    """argv of a console script the way `ros2 run package executable` finds it
    (<prefix>/lib/<package>/<executable>), else `python -m module`."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        script = Path(get_package_prefix(package)) / "lib" / package / executable
        if script.exists():
            return [str(script)]
    except (ImportError, PackageNotFoundError, ValueError):
        pass
    return [sys.executable, "-m", module]


def yaml_text(value) -> str:
    """A parameter value as rcl reads it: strings single-quoted (text, whatever they look like), lists in
    flow syntax, booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(yaml_text(v) for v in value) + "]"
    return str(value)


def ros_args(parameters: Dict[str, object], node_name: str = "", namespace: str = "",
             params_files: Sequence = ()) -> List[str]:
    """`--ros-args [-r __node:=NAME] [-r __ns:=NS] [--params-file F ...] -p name:=value ...`: the one
    builder of a node's ROS arguments (parameter files first, so the `-p` values override them)."""
    argv = ["--ros-args"]
    if node_name:
        argv += ["-r", f"__node:={node_name}"]
    if namespace:
        argv += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
    for params_file in params_files:
        argv += ["--params-file", str(params_file)]
    for name, value in parameters.items():
        argv += ["-p", f"{name}:={yaml_text(value)}"]
    return argv


class NodeProcess:
    """One node in its own process group, output to a log file; stop() ends it by pid."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: Optional[dict] = None):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            list(argv),
            env=dict(env or os.environ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() reaches its children too
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout_s)
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
