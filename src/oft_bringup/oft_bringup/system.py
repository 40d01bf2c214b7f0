"""What each launch file of oft_bringup starts, as plain data.

One description per system (`aloha_oft`, `sim_oft`, `record`): its launch
arguments, and a function from their values to the nodes, included launch
files and processes it can start, each with the arguments that decide whether
it does (`when` / `unless`). `ros2 launch oft_bringup <name>.launch.py`
(through `oft_bringup.launch_file`) and the launch-free `bringup` runner both
start what `plan()` returns, so the two cannot drift apart.

Argument values are text, as on a command line. Nothing here imports `launch`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

import yaml

from oft_policy import calibration, names
from oft_policy.normalization import STATS_FILENAME
from oft_policy.runtime.chunks import start_lead_limit

PACKAGE = "oft_bringup"
DEFAULT_CALIBRATION = calibration.DEFAULT_CALIBRATION.name

CAMERA_QOS = {"history": "keep_last", "depth": 100, "reliability": "best_effort", "durability": "volatile"}
"""What the recorder subscribes to cameras with (why: config/record_qos_overrides.yaml)."""

QOS_OVERRIDES_FILE = "record_qos_overrides.yaml"

CONFIGURE_FAILED = "{node} failed to configure (see its log: missing or unreadable checkpoint, no instruction?); shutting down"


class ArgumentError(ValueError):
    """Launch arguments that name no argument, miss a required one, or hold an unusable value."""


@dataclass(frozen=True)
class Argument:
    name: str
    default: Optional[str]  # None: required
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """One ROS node: what `ros2 run` finds, how it is named, and what it is given."""

    package: str
    executable: str
    name: str
    module: str  # `python -m` fallback where no console script is installed
    lifecycle: bool = False
    parameter_files: Tuple[str, ...] = ()
    parameters: Mapping[str, object] = field(default_factory=dict)  # applied after the files
    remappings: Tuple[Tuple[str, str], ...] = ()
    namespace: str = ""
    when: Tuple[str, ...] = ()  # boolean arguments that must all be true
    unless: Tuple[str, ...] = ()  # boolean arguments that must all be false


@dataclass(frozen=True)
class Include:
    """A launch file named by an argument (empty: none), e.g. the robot's driver bringup."""

    argument: str
    path: str
    when: Tuple[str, ...] = ()
    unless: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Process:
    """A program that is not a ROS node: a suite console script (package set) or one on PATH (args[0])."""

    name: str
    args: Tuple[str, ...]
    package: str = ""
    executable: str = ""
    module: str = ""
    writes: Tuple[Tuple[str, str], ...] = ()  # (path, text) to write before it starts
    when: Tuple[str, ...] = ()
    unless: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    nodes: Tuple[NodeSpec, ...] = ()
    includes: Tuple[Include, ...] = ()
    processes: Tuple[Process, ...] = ()


@dataclass(frozen=True)
class System:
    name: str
    summary: str
    arguments: Tuple[Argument, ...]
    build: Optional[Callable[[Mapping[str, str], str], Plan]] = None  # (values, scratch directory) -> everything
    base: str = ""  # or: the system this one starts, with these arguments and `fixed` values
    fixed: Mapping[str, str] = field(default_factory=dict)

    @property
    def argument_names(self) -> Tuple[str, ...]:
        return tuple(argument.name for argument in self.arguments)


def config_file(name: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(PACKAGE), "config", name)


def parse_bool(name: str, text: str) -> bool:
    """launch's rule for conditions: true/1 and false/0, any case."""
    truth = {"true": True, "1": True, "false": False, "0": False}.get(str(text).strip().lower())
    if truth is None:
        raise ArgumentError(f"{name}:={text} is neither true nor false")
    return truth


def parse_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ArgumentError(f"{name}:={text} is not a number") from None


def parse_delay(values: Mapping[str, str]) -> int:
    text = values["inference_delay_steps"]
    try:
        delay = int(text)
    except ValueError:
        raise ArgumentError(f"inference_delay_steps:={text} is not a whole number") from None
    if delay < 0:
        raise ArgumentError(f"inference_delay_steps:={text} is negative")
    return delay


def checked_pattern(pattern: str) -> str:
    try:
        names.camera_topic(names.CAMERA_NAMES[0], pattern)
    except ValueError as exc:
        raise ArgumentError(f"camera_topic_pattern:={pattern}: {exc}") from None
    return pattern


# aloha_oft -----------------------------------------------------------------

CHECKPOINT_ARGUMENT = Argument("checkpoint", None, "checkpoint directory (weights, config, normalization stats)")
CONTROL_RATE_ARGUMENT = Argument("control_rate", "50.0", "executor control rate in Hz")
INFERENCE_DELAY_ARGUMENT = Argument(
    "inference_delay_steps", "0",
    "policy latency in control ticks: chunks are timed from their observation and run from this many ticks "
    "after it (0: from when each is ready)",
)
CAMERA_PATTERN_ARGUMENT = Argument(
    "camera_topic_pattern", names.CAMERA_TOPIC_PATTERN, "image topic of each camera; {camera} is its name"
)


def _aloha_oft_arguments() -> Tuple[Argument, ...]:
    return (
        CHECKPOINT_ARGUMENT,
        Argument("instruction", "", "task instruction (the policy node refuses to configure without one)"),
        Argument("device", "cuda", "torch device of the policy: cuda, cuda:1, cpu"),
        CONTROL_RATE_ARGUMENT,
        INFERENCE_DELAY_ARGUMENT,
        Argument("calibration", DEFAULT_CALIBRATION, "gripper calibration preset of the rig: aloha2 or aloha1"),
        CAMERA_PATTERN_ARGUMENT,
        Argument("use_sim", "false", "true: MuJoCo simulator and sim time instead of the robot"),
        Argument("task", "transfer_cube", "simulator task (use_sim:=true): transfer_cube, insertion or handover_by_color"),
        Argument("run_policy", "true", "start the policy node (GPU side)"),
        Argument("run_executor", "true", "start the executor node (robot side)"),
        Argument("driver_launch", "", "launch file of the arms' driver (e.g. the ALOHA bringup); empty: none"),
        Argument("camera_launch", "", "launch file of the cameras; empty: none"),
        Argument("policy_params", config_file("policy_node.yaml"), "policy node parameter file"),
        Argument("executor_params", config_file("executor_node.yaml"), "executor node parameter file"),
        Argument("sim_params", config_file("aloha_sim.yaml"), "simulator parameter file"),
    )


def _simulator(values: Mapping[str, str]) -> NodeSpec:
    return NodeSpec(
        "oft_sim", "aloha_sim", "aloha_sim", "oft_sim.nodes.aloha_sim",
        parameter_files=(values["sim_params"],),
        # The simulator publishes /clock, so it never runs on sim time itself.
        parameters={"task": values["task"], "camera_topic_pattern": checked_pattern(values["camera_topic_pattern"]),
                    "calibration": values["calibration"]},
        when=("use_sim",),
    )


def _rig(values: Mapping[str, str]) -> dict:
    """What both sides of the runtime must agree on."""
    return {"calibration": values["calibration"], "use_sim_time": parse_bool("use_sim", values["use_sim"])}


def _start_lead(values: Mapping[str, str]) -> dict:
    """With an inference delay, chunks reach the executor before their start: let them (else the YAML's limit)."""
    delay, rate = parse_delay(values), parse_float("control_rate", values["control_rate"])
    if not delay:
        return {}
    if rate <= 0:
        raise ArgumentError(f"control_rate:={values['control_rate']} must be positive")
    return {"max_future_s": start_lead_limit(delay, 1.0 / rate)}


def _executor(values: Mapping[str, str]) -> NodeSpec:
    return NodeSpec(
        "oft_policy", "executor_node", "executor_node", "oft_policy.nodes.executor_node",
        parameter_files=(values["executor_params"],),
        parameters={
            "control_rate_hz": parse_float("control_rate", values["control_rate"]),
            "stats_path": os.path.join(values["checkpoint"], STATS_FILENAME),
            **_rig(values),
            **_start_lead(values),
        },
        when=("run_executor",),
    )


def _policy(values: Mapping[str, str]) -> NodeSpec:
    return NodeSpec(
        "oft_policy", "policy_node", "policy_node", "oft_policy.nodes.policy_node", lifecycle=True,
        parameter_files=(values["policy_params"],),
        parameters={
            "checkpoint_path": values["checkpoint"],
            "instruction": values["instruction"],
            "device": values["device"],
            "inference_delay_steps": parse_delay(values),
            "camera_topic_pattern": checked_pattern(values["camera_topic_pattern"]),
            **_rig(values),
        },
        when=("run_policy",),
    )


def _aloha_oft_plan(values: Mapping[str, str], scratch_dir: str) -> Plan:
    robot = tuple(Include(argument, values[argument], unless=("use_sim",)) for argument in ("driver_launch", "camera_launch"))
    return Plan(nodes=(_simulator(values), _executor(values), _policy(values)), includes=robot)


def aloha_oft() -> System:
    return System(
        "aloha_oft", "policy node + executor node, with the simulator (use_sim) or the robot's driver and cameras",
        _aloha_oft_arguments(), _aloha_oft_plan,
    )


def sim_oft() -> System:
    """aloha_oft with use_sim:=true, fewer arguments and a CPU policy by default."""
    return System(
        "sim_oft", "the simulated closed loop: MuJoCo ALOHA + policy node + executor node, on sim time",
        (
            CHECKPOINT_ARGUMENT,
            Argument("instruction", None, "task instruction, e.g. 'transfer the cube'"),
            Argument("task", "transfer_cube", "transfer_cube, insertion or handover_by_color"),
            Argument("device", "cpu", "torch device of the policy"),
            CONTROL_RATE_ARGUMENT,
            INFERENCE_DELAY_ARGUMENT,
        ),
        base="aloha_oft", fixed={"use_sim": "true"},
    )


# record --------------------------------------------------------------------

def rosbag2_installed() -> bool:
    return shutil.which("ros2") is not None and importlib.util.find_spec("rosbag2_py") is not None


def qos_overrides(pattern: str = names.CAMERA_TOPIC_PATTERN) -> Dict[str, dict]:
    """rosbag2's --qos-profile-overrides-path content for the cameras of `pattern`."""
    return {topic: dict(CAMERA_QOS) for topic in names.camera_topics(pattern=pattern)}


def qos_overrides_file(pattern: str, scratch_dir: str) -> Tuple[str, Tuple[Tuple[str, str], ...]]:
    """(path, files to write): the committed file for the default pattern, else one made for `pattern`."""
    if pattern == names.CAMERA_TOPIC_PATTERN:
        return config_file(QOS_OVERRIDES_FILE), ()
    path = os.path.join(scratch_dir, QOS_OVERRIDES_FILE)
    return path, ((path, yaml.safe_dump(qos_overrides(pattern), sort_keys=False)),)


def recorded_topics(pattern: str) -> Tuple[str, ...]:
    return (*names.camera_topics(pattern=pattern), *names.FOLLOWER_JOINT_STATE_TOPICS, *names.LEADER_JOINT_STATE_TOPICS,
            names.INSTRUCTION_TOPIC)


def _record_plan(values: Mapping[str, str], scratch_dir: str) -> Plan:
    output, pattern = values["output"], checked_pattern(values["camera_topic_pattern"])
    sim_flag = ("--use-sim-time",) if parse_bool("use_sim_time", values["use_sim_time"]) else ()
    overrides, writes = qos_overrides_file(pattern, scratch_dir)
    rosbag2 = Process(
        "ros2_bag_record",
        ("ros2", "bag", "record", "-s", "mcap", "--qos-profile-overrides-path", overrides, *sim_flag,
         "-o", output, *recorded_topics(pattern)),
        writes=writes, when=("use_rosbag2",),
    )
    # Not a node: `record` takes its own flags (and subscribes best effort, so needs no overrides).
    suite = Process(
        "record", ("--storage", "mcap", *sim_flag, "--out", output, "--camera-topic-pattern", pattern),
        package="oft_training", executable="record", module="oft_training.cli.record", unless=("use_rosbag2",),
    )
    return Plan(processes=(rosbag2, suite))


def record() -> System:
    return System(
        "record", "record a teleoperated ALOHA episode: cameras, follower and leader joint states, mcap",
        (
            Argument("output", None, "bag directory to create (must not exist)"),
            Argument("use_rosbag2", "true" if rosbag2_installed() else "false",
                     "record with `ros2 bag record` (default when rosbag2 is installed) or the suite's `record`"),
            Argument("use_sim_time", "false", "stamp messages with /clock time (recording the simulator)"),
            CAMERA_PATTERN_ARGUMENT,
        ),
        _record_plan,
    )


# what runs -----------------------------------------------------------------

SYSTEMS: Dict[str, Callable[[], System]] = {"aloha_oft": aloha_oft, "sim_oft": sim_oft, "record": record}


def system(name: str) -> System:
    if name not in SYSTEMS:
        raise ArgumentError(f"no system {name!r}; one of: {', '.join(SYSTEMS)}")
    return SYSTEMS[name]()


def argument_values(described: System, given: Mapping[str, str]) -> Dict[str, str]:
    """Every argument's value: the given ones over the defaults; unknown or missing ones refused."""
    unknown = sorted(set(given) - set(described.argument_names))
    if unknown:
        raise ArgumentError(
            f"{described.name} has no argument {', '.join(unknown)}; its arguments: {', '.join(described.argument_names)}"
        )
    values = {a.name: a.default for a in described.arguments if a.default is not None}
    values.update(given)
    missing = [a for a in described.arguments if a.name not in values]
    if missing:
        raise ArgumentError(f"{described.name} needs " + ", ".join(f"{a.name}:=... ({a.description})" for a in missing))
    return values


def _holds(entry, values: Mapping[str, str]) -> bool:
    return all(parse_bool(n, values[n]) for n in entry.when) and not any(parse_bool(n, values[n]) for n in entry.unless)


def plan(described: System, given: Mapping[str, str], scratch_dir: str) -> Plan:
    """What starts for these argument values: only entries whose conditions hold (and named includes)."""
    values = argument_values(described, given)
    if described.base:
        return plan(system(described.base), {**values, **described.fixed}, scratch_dir)
    everything = described.build(values, scratch_dir)
    return Plan(
        nodes=tuple(n for n in everything.nodes if _holds(n, values)),
        includes=tuple(i for i in everything.includes if i.path and _holds(i, values)),
        processes=tuple(p for p in everything.processes if _holds(p, values)),
    )
