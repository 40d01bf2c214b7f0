"""The launch files and `bringup` start the same thing: the one description in oft_bringup.system.

`launch` is not importable here, so the two pure mappings are compared
instead: description -> launch_ros Node keyword arguments, and description ->
the argv `bringup` runs, which rcl itself parses (a real rclpy context) to
show the node name, parameters and remappings it gets. Each launch file is
checked to define nothing of its own; where `launch` is installed it is also
built. The described nodes are checked against the nodes as built (rclpy):
every parameter given is declared, lifecycle nodes are launched as such.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from oft_bringup import system as described
from oft_bringup.node_interface import flatten_parameters, introspect_node, yaml_sections_for
from oft_bringup.starting import node_action_kwargs, node_argv, process_action_kwargs, process_argv
from oft_bringup.system import NodeSpec, plan

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "launch"
LAUNCH_FILES = sorted(LAUNCH_DIR.glob("*.launch.py"))
OWN_ACTIONS = {"Node", "LifecycleNode", "ExecuteProcess", "DeclareLaunchArgument", "IncludeLaunchDescription",
               "RegisterEventHandler", "OpaqueFunction"}

COMBINATIONS = [
    ("aloha_oft", {"checkpoint": "ck"}),
    ("aloha_oft", {"checkpoint": "/models/ck", "instruction": "yes", "device": "cuda:1", "use_sim": "true",
                   "control_rate": "100", "calibration": "aloha1", "camera_topic_pattern": "/{camera}/image_raw"}),
    ("aloha_oft", {"checkpoint": "ck", "run_policy": "false", "instruction": "it's 1: a 'test' # really"}),
    ("aloha_oft", {"checkpoint": "ck", "run_executor": "0", "use_sim": "True", "task": "insertion"}),
    ("sim_oft", {"checkpoint": "ck", "instruction": "true"}),
]
SYNTHETIC = NodeSpec(
    "oft_policy", "executor_node", "renamed_executor", "oft_policy.nodes.executor_node", namespace="robot",
    parameters={"text": "null", "number": 2, "ratio": 0.5, "flag": False, "empty": ""},
    remappings=(("/oft/action_chunk", "/robot/chunks"), ("joint_states", "/other/joint_states")),
)


class Text(str):
    """Stands in for launch_ros' ParameterValue(..., value_type=str) to see every string kept as text."""


def _started_nodes(name, given, tmp_path):
    return plan(described.system(name), given, str(tmp_path)).nodes


def _as_launched(node: NodeSpec) -> dict:
    """What launch_ros gives the node: its parameter files, then the dict on top; text as text."""
    kwargs = node_action_kwargs(node, keep_text=Text)
    *files, overrides = kwargs["parameters"]
    strings = [v for v in overrides.values() if isinstance(v, str)]
    assert all(isinstance(v, Text) for v in strings), "a string parameter would be YAML-typed by launch_ros"
    parameters = {}
    for path in files:
        for section in yaml_sections_for(yaml.safe_load(Path(path).read_text()), kwargs["name"],
                                         "/" + kwargs["namespace"]):
            parameters.update(flatten_parameters(section))
    parameters.update({key: str(v) if isinstance(v, Text) else v for key, v in overrides.items()})
    return {**kwargs, "parameters": parameters}


def _as_run(argv) -> dict:
    """What rcl makes of bringup's argv: the node's name, namespace, parameters and remappings."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(args=argv, context=context)
    try:
        node = rclpy.create_node("unnamed", context=context, automatically_declare_parameters_from_overrides=True)
        parameters = {k: p.value for k, p in node._parameters.items() if k != "start_type_description_service"}
        resolved = {topic: node.resolve_topic_name(topic) for topic in ("/oft/action_chunk", "joint_states", "/unmapped")}
        seen = {"name": node.get_name(), "namespace": node.get_namespace(), "parameters": parameters, "resolve": resolved}
        node.destroy_node()
        return seen
    finally:
        context.try_shutdown()


def _assert_same_start(node: NodeSpec):
    launched, argv = _as_launched(node), node_argv(node)
    assert Path(argv[0]).parts[-3:] == ("lib", launched["package"], launched["executable"]), argv[0]
    run = _as_run(argv)
    assert run["name"] == launched["name"]
    assert run["namespace"] == "/" + launched["namespace"].strip("/")
    if "use_sim_time" not in launched["parameters"]:
        run["parameters"].pop("use_sim_time")
    assert run["parameters"] == launched["parameters"]
    namespace = run["namespace"].rstrip("/")
    remapped = {source if source.startswith("/") else f"{namespace}/{source}": target
                for source, target in launched["remappings"]}
    for topic, resolved in run["resolve"].items():
        expanded = topic if topic.startswith("/") else f"{namespace}/{topic}"
        assert resolved == remapped.get(expanded, expanded), topic


def test_every_launch_file_is_here():
    assert {p.name for p in LAUNCH_FILES} == {f"{name}.launch.py" for name in described.SYSTEMS}


@pytest.mark.parametrize("name,given", COMBINATIONS, ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_launch_and_bringup_start_the_same_nodes(name, given, tmp_path):
    nodes = _started_nodes(name, given, tmp_path)
    assert nodes
    for node in nodes:
        _assert_same_start(node)


def test_remappings_namespace_and_plain_values_agree():
    _assert_same_start(SYNTHETIC)


def test_record_processes_are_the_same_for_both(tmp_path):
    for use_rosbag2 in ("true", "false"):
        (process,) = plan(described.system("record"), {"output": "bag", "use_rosbag2": use_rosbag2}, str(tmp_path)).processes
        assert process_action_kwargs(process)["cmd"] == process_argv(process)


def test_conditions_decide_what_starts(tmp_path):
    def started(given, name="aloha_oft"):
        chosen = plan(described.system(name), {"checkpoint": "ck", **given}, str(tmp_path))
        return {n.executable for n in chosen.nodes} | {i.argument for i in chosen.includes}

    robot = {"driver_launch": "/robot/driver.launch.py", "camera_launch": "/robot/cameras.launch.py"}
    assert started({}) == {"executor_node", "policy_node"}
    assert started(robot) == {"executor_node", "policy_node", "driver_launch", "camera_launch"}
    assert started({**robot, "use_sim": "true"}) == {"aloha_sim", "executor_node", "policy_node"}
    assert started({"run_policy": "false"}) == {"executor_node"}
    assert started({"run_executor": "false"}) == {"policy_node"}
    assert started({"instruction": "x"}, "sim_oft") == {"aloha_sim", "executor_node", "policy_node"}
    (policy,) = [n for n in _started_nodes("aloha_oft", {"checkpoint": "ck"}, tmp_path) if n.lifecycle]
    assert policy.name == "policy_node"


def launch_file_problems(source: str, expected: str) -> list:
    """Why a launch file is not a thin `launch_description("<its system>")` over the description."""
    tree = ast.parse(source)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            problems += [f"imports {m} itself" for m in modules if m.split(".")[0] in ("launch", "launch_ros")]
        if isinstance(node, ast.Name) and node.id in OWN_ACTIONS:
            problems.append(f"line {node.lineno}: defines its own {node.id}")
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    entry = functions.get("generate_launch_description")
    body = entry.body if entry else []
    call = body[0].value if len(body) == 1 and isinstance(body[0], ast.Return) else None
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "launch_description"
            and [getattr(a, "value", None) for a in call.args] == [expected]):
        problems.append(f'generate_launch_description() is not `return launch_description("{expected}")`')
    return problems


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_builds_from_the_description(path):
    name = path.name.removesuffix(".launch.py")
    assert launch_file_problems(path.read_text(), name) == []
    if importlib.util.find_spec("launch") and importlib.util.find_spec("launch_ros"):
        _build_with_launch(path, name)


def test_launch_file_check_catches_own_definitions():
    own = '''
from launch import LaunchDescription
from launch_ros.actions import Node
from oft_bringup.launch_file import launch_description

def generate_launch_description():
    extra = Node(package="oft_policy", executable="executor_node")
    return launch_description("aloha_oft")
'''
    problems = launch_file_problems(own, "aloha_oft")
    assert "imports launch itself" in problems and any("defines its own Node" in p for p in problems)
    assert any("is not `return" in p for p in problems)
    thin_but_wrong = 'from oft_bringup.launch_file import launch_description\n\n' \
                     'def generate_launch_description():\n    return launch_description("record")\n'
    assert launch_file_problems(thin_but_wrong, "aloha_oft") == [
        'generate_launch_description() is not `return launch_description("aloha_oft")`'
    ]


def _build_with_launch(path: Path, name: str):
    """On a ROS 2 install: the file's LaunchDescription declares exactly the described arguments."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = [e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert declared == list(described.system(name).argument_names)


def test_described_nodes_are_the_nodes_as_built(tmp_path):
    """Every parameter the description gives is declared by the node, each parameter file has a
    section for it (its keys: test_bringup_params), and exactly the lifecycle nodes are described so."""
    every_node = _started_nodes("aloha_oft", {"checkpoint": str(tmp_path), "use_sim": "true"}, tmp_path)
    assert {n.executable for n in every_node} == {"aloha_sim", "executor_node", "policy_node"}
    problems = [problem for node in every_node for problem in _differences_from_built(node)]
    assert not problems, "\n".join(problems)


def _differences_from_built(node: NodeSpec) -> list:
    built = introspect_node(node.package, node.executable, node_name=node.name)
    problems = [f"{node.name}: lifecycle is {built.is_lifecycle}"] if built.is_lifecycle != node.lifecycle else []
    problems += [f"{node.name} does not declare {key}" for key in sorted(set(node.parameters) - set(built.parameters))]
    problems += [f"{Path(path).name}: no section for {node.name}" for path in node.parameter_files
                 if not list(yaml_sections_for(yaml.safe_load(Path(path).read_text()), node.name))]
    return problems
