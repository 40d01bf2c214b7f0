"""``bringup``: start what a launch file of oft_bringup starts, without `launch` installed.

    bringup aloha_oft checkpoint:=DIR instruction:=TEXT [device:=cpu] [use_sim:=true] ...
    bringup record output:=bags/episode_000
    bringup aloha_oft --show-args

The systems, their arguments and defaults are the launch files' own
(oft_bringup.system). Each node runs as `ros2 run` would run it, with
`--ros-args --params-file F -p name:=value -r from:=to`, in its own process
group with its output in a log file. A lifecycle node is configured, then
activated once configuring succeeded; a failed configure stops everything.
Ctrl-C, SIGINT or SIGTERM stops every child (SIGINT, then SIGKILL after a
grace period). Exit status: 0 when no child failed, 1 when one did (or a
configure failed), 2 for unusable arguments.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from oft_policy.processes import NodeProcess

from oft_bringup.starting import include_argv, node_argv, process_argv, write_files
from oft_bringup.system import CONFIGURE_FAILED, SYSTEMS, ArgumentError, NodeSpec, Plan, System, plan, system

SERVICE_TIMEOUT_S = 120.0
"""How long a lifecycle node's process may take to offer change_state (torch imports are slow)."""

STOP_TIMEOUT_S = 10.0
CLEAN_STOP_CODES = (0, -signal.SIGINT, 128 + signal.SIGINT)
"""Exit codes of a child that stopped because it was asked to."""

LOG_TAIL_LINES = 20


class Interrupted(Exception):
    pass


class ChildExited(Exception):
    def __init__(self, child):
        super().__init__(child.name)
        self.child = child


class BringupFailed(Exception):
    def __init__(self, message: str, explained_by: str = ""):
        super().__init__(message)
        self.explained_by = explained_by  # the child whose log says why


def say(message: str, stream=None) -> None:
    print(f"[bringup] {message}", file=stream or sys.stdout, flush=True)


class Run:
    """The children of one run, and the wait loop that notices a signal or a child's exit."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.children = []
        self.signal: Optional[int] = None

    def start(self, name: str, argv: List[str]) -> None:
        try:
            child = NodeProcess(name, argv, self.log_dir)
        except OSError as exc:
            raise BringupFailed(f"cannot start {name} ({shlex.join(argv)}): {exc}") from None
        self.children.append(child)
        say(f"started {name} (pid {child.proc.pid}, log {child.log_path}): {shlex.join(argv)}")

    def check(self) -> None:
        if self.signal is not None:
            raise Interrupted(signal.Signals(self.signal).name)
        for child in self.children:
            if not child.alive():
                raise ChildExited(child)

    def wait_until(self, done: Callable[[], bool], spin: Callable[[float], None] = time.sleep,
                   timeout_s: Optional[float] = None, what: str = "") -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.check()
            if done():
                return
            if deadline is not None and time.monotonic() > deadline:
                raise BringupFailed(f"no {what} within {timeout_s:g} s")
            spin(0.1)

    def stop(self) -> List[str]:
        """Stops every child, the last started first; the names of those that did not stop cleanly."""
        unclean = []
        for child in reversed(self.children):
            was_running = child.alive()
            child.stop(timeout_s=STOP_TIMEOUT_S)
            if was_running and child.proc.returncode not in CLEAN_STOP_CODES:
                unclean.append(f"{child.name} (exit code {child.proc.returncode})")
        return unclean


def commands(started: Plan) -> List[Tuple[str, List[str]]]:
    """(name, argv) of everything the plan starts, in the order it starts."""
    return ([(i.argument, include_argv(i)) for i in started.includes]
            + [(p.name, process_argv(p)) for p in started.processes]
            + [(n.name, node_argv(n)) for n in started.nodes])


def start_all(run: Run, started: Plan) -> None:
    if started.includes and shutil.which("ros2") is None:
        named = ", ".join(f"{i.argument}:={i.path}" for i in started.includes)
        raise BringupFailed(f"{named} needs the ros2 CLI (`ros2 launch`), which is not installed here")
    for process in started.processes:
        write_files(process)
    for name, argv in commands(started):
        run.start(name, argv)


def bring_up(run: Run, node: NodeSpec) -> None:
    """configure, then activate once configuring succeeded."""
    from oft_bringup.lifecycle import LifecycleClient, configure_then_activate

    client = LifecycleClient(node.name, node.namespace)
    try:
        run.wait_until(client.ready, client.spin_once, SERVICE_TIMEOUT_S, f"{client.service} service")
        for label, transition in configure_then_activate():
            say(f"{label} {node.name}")
            future = client.request(transition)
            run.wait_until(future.done, client.spin_once)
            if not future.result().success:
                failed = CONFIGURE_FAILED if label == "configure" else "{node} failed to activate; shutting down"
                raise BringupFailed(failed.format(node=node.name), explained_by=node.name)
        say(f"{node.name} is active")
    finally:
        client.close()


def say_with_log(message: str, child) -> None:
    lines = child.log_path.read_text(errors="replace").splitlines()
    tail = "\n".join(lines[-LOG_TAIL_LINES:])
    say(f"{message}. {child.name}'s log ({child.log_path}) ends:\n{tail}", sys.stderr)


def run_plan(started: Plan, log_dir: Path) -> int:
    """Start, bring up lifecycle nodes, wait; stop everything on a signal or a child's exit."""
    run = Run(log_dir)
    previous = {s: signal.signal(s, lambda signum, frame: setattr(run, "signal", signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = _run_until_stopped(run, started)
    finally:
        unclean = run.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if unclean:
        say(f"did not stop cleanly: {', '.join(unclean)}", sys.stderr)
        return 1
    return status


def _run_until_stopped(run: Run, started: Plan) -> int:
    try:
        start_all(run, started)
        for node in (n for n in started.nodes if n.lifecycle):
            bring_up(run, node)
        run.wait_until(lambda: False)
    except Interrupted as exc:
        say(f"{exc}: stopping")
        return 0
    except ChildExited as exc:
        child = exc.child
        say_with_log(f"{child.name} exited with code {child.proc.returncode}; stopping", child)
        return 0 if child.proc.returncode == 0 else 1
    except BringupFailed as exc:
        explaining = [c for c in run.children if c.name == exc.explained_by]
        for child in explaining:
            say_with_log(str(exc), child)
        if not explaining:
            say(str(exc), sys.stderr)
        return 1
    return 0  # unreachable: the wait above ends only by an exception


def parse_assignments(items: List[str]) -> Dict[str, str]:
    """`name:=value` items -> {name: value} (a later one wins, as in `ros2 launch`)."""
    given = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ArgumentError(f"{item!r} is not name:=value")
        given[name] = value
    return given


def default_log_dir(name: str) -> Path:
    ros_log = os.environ.get("ROS_LOG_DIR") or os.path.join(os.environ.get("ROS_HOME", "~/.ros"), "log")
    return Path(ros_log).expanduser() / f"bringup_{name}_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bringup",
        description="Start the nodes a launch file of oft_bringup starts, without `launch`.",
        epilog=f"systems: {', '.join(SYSTEMS)}. See a system's arguments with --show-args.",
    )
    parser.add_argument("system", help="what to start: " + ", ".join(SYSTEMS))
    parser.add_argument("arguments", nargs="*", metavar="name:=value", help="launch arguments")
    parser.add_argument("--log-dir", type=Path, help="where each child's log goes (default: under the ROS log directory)")
    parser.add_argument("--show-args", action="store_true", help="list the system's arguments and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and start nothing")
    return parser


def show_arguments(described: System) -> str:
    lines = [f"{described.name}: {described.summary}"]
    for argument in described.arguments:
        default = "(required)" if argument.default is None else f"(default: {argument.default!r})"
        lines.append(f"  {argument.name} {default}\n      {argument.description}")
    return "\n".join(lines)


def dry_run(started: Plan) -> str:
    return "\n".join(shlex.join(argv) for _, argv in commands(started))


def main(argv=None) -> int:
    options = build_parser().parse_intermixed_args(argv)
    try:
        described = system(options.system)
        if options.show_args:
            print(show_arguments(described))
            return 0
        log_dir = options.log_dir or default_log_dir(described.name)
        started = plan(described, parse_assignments(options.arguments), str(log_dir))
    except ArgumentError as exc:
        print(f"bringup: error: {exc}", file=sys.stderr)
        return 2
    if options.dry_run:
        print(dry_run(started))
        return 0
    log_dir.mkdir(parents=True, exist_ok=True)
    return run_plan(started, log_dir)


if __name__ == "__main__":
    sys.exit(main())
