"""The launch files of oft_bringup, checked without `launch` / `launch_ros`.

Each file is read statically (`oft_bringup.static_launch`) and every node in it
is checked against the built workspace (`oft_bringup.launch_check`): the
executable is installed where `ros2 run` looks, parameter files exist and hold
only parameters the node declares, remapped names are topics the node uses
(the policy node is configured with a tiny checkpoint first, since that is
where it subscribes to the checkpoint's cameras). A deliberately broken launch
file shows the checker reports each kind of fault. Where `launch` is
importable (a ROS 2 install), each file's LaunchDescription is also built.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from oft_bringup.launch_check import check_launch_file, default_interface_provider
from oft_bringup.static_launch import LaunchCall, read_launch_file
from oft_policy import names

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "launch"
LAUNCH_FILES = sorted(LAUNCH_DIR.glob("*.launch.py"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from oft_policy.checkpoint import make_tiny_checkpoint

    torch.set_num_threads(1)
    return Path(make_tiny_checkpoint(tmp_path_factory.mktemp("bringup") / "ckpt", seed=0))


@pytest.fixture(scope="module")
def provider():
    # One provider for the module: each distinct node set-up is built once.
    return default_interface_provider(configure=True)


def _arguments(path: Path, request, tmp_path: Path) -> dict:
    declared = read_launch_file(path).declared
    candidates = {
        # The tiny checkpoint takes seconds to make: only for files that take one.
        "checkpoint": str(request.getfixturevalue("checkpoint")) if "checkpoint" in declared else None,
        "instruction": "transfer the cube",
        "device": "cpu",
        # Integer-looking on purpose: the executor's double parameter must still accept it.
        "control_rate": "50",
        # Interbotix messages come with the robot's workspace; this machine has none.
        "backend": "ros2_control",
        "output": str(tmp_path / "bag"),
    }
    return {k: v for k, v in candidates.items() if k in declared}


def test_every_launch_file_is_here():
    assert {p.name for p in LAUNCH_FILES} >= {"aloha_oft.launch.py", "sim_oft.launch.py", "record.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_checks_out(path, request, provider, tmp_path):
    arguments = _arguments(path, request, tmp_path)
    report = check_launch_file(path, arguments, provider)
    assert report.ok, "\n".join(report.problems)
    for node in report.nodes:
        if node.interface is not None and node.interface.is_lifecycle:
            assert node.interface.configured, f"{node.executable}: topics read before configure"

    if importlib.util.find_spec("launch") is not None and importlib.util.find_spec("launch_ros") is not None:
        _build_with_launch(path)


def _build_with_launch(path: Path):
    """On a ROS 2 install: import the file and build its LaunchDescription."""
    from launch import LaunchDescription

    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    assert description.entities


def test_aloha_oft_nodes_arguments_and_remappings(request, provider, tmp_path):
    path = LAUNCH_DIR / "aloha_oft.launch.py"
    report = check_launch_file(path, _arguments(path, request, tmp_path), provider)
    launched = {(n.package, n.executable) for n in report.nodes}
    assert launched == {("oft_policy", "policy_node"), ("oft_policy", "executor_node"), ("oft_sim", "aloha_sim")}
    declared = report.launch_file.declared
    for argument in ("checkpoint", "instruction", "backend", "control_rate", "use_sim", "driver_launch", "camera_launch", "device"):
        assert argument in declared, f"aloha_oft.launch.py does not declare {argument}"
    assert declared["checkpoint"] is None, "checkpoint must be required"
    policy = next(n for n in report.launch_file.nodes if n.get("executable") == "policy_node")
    remapped = {pair[0] for pair in policy.get("remappings")}
    assert remapped == set(names.CAMERA_TOPICS)
    # the remapped camera topics really are the configured policy node's subscriptions
    policy_report = next(n for n in report.nodes if n.executable == "policy_node")
    assert remapped <= set(policy_report.interface.subscriptions)
    assert policy_report.interface.parameters["instruction"].value == "transfer the cube"

    # Text arguments stay text: YAML would make "yes" a bool, which the string parameter refuses.
    yes = check_launch_file(path, {**_arguments(path, request, tmp_path), "instruction": "yes"}, provider)
    assert yes.ok, "\n".join(yes.problems)


def test_policy_lifecycle_is_driven_in_order():
    """configure when the process starts; activate only on configuring -> inactive; a failed configure shuts down."""
    from lifecycle_msgs.msg import Transition

    calls = read_launch_file(LAUNCH_DIR / "aloha_oft.launch.py").calls

    def transitions(entities):
        return [
            e.kwargs["event"].kwargs["transition_id"]
            for e in entities
            if isinstance(e, LaunchCall) and e.kind == "EmitEvent" and e.kwargs["event"].kind == "ChangeState"
        ]

    handlers = {
        call.kwargs["goal_state"]: call.kwargs["entities"]
        for call in calls
        if call.kind == "OnStateTransition" and call.kwargs.get("start_state") == "configuring"
    }
    assert transitions(handlers["inactive"]) == [Transition.TRANSITION_ACTIVATE]
    for failed in ("unconfigured", "errorprocessing"):
        kinds = [e.kwargs["event"].kind for e in handlers[failed] if e.kind == "EmitEvent"]
        assert kinds == ["Shutdown"], f"configure -> {failed} must shut the launch down"
        assert any(e.kind == "LogInfo" and "failed to configure" in e.kwargs["msg"] for e in handlers[failed])
    (on_start,) = [c.kwargs["on_start"] for c in calls if c.kind == "OnProcessStart"]
    policy = next(n for n in read_launch_file(LAUNCH_DIR / "aloha_oft.launch.py").nodes if n.kind == "LifecycleNode")
    assert transitions(on_start) == [Transition.TRANSITION_CONFIGURE]
    emitted = [c for c in calls if c.kind == "ChangeState"]
    assert all(c.kwargs["lifecycle_node_matcher"].kind == "matches_action" for c in emitted)
    assert all(c.kwargs["lifecycle_node_matcher"].args == [policy] for c in emitted)
    assert len(emitted) == 2, "exactly one configure and one activate request"


BROKEN_LAUNCH = textwrap.dedent(
    """
    import os
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    HERE = os.path.dirname(__file__)

    def generate_launch_description():
        return LaunchDescription([
            DeclareLaunchArgument("params", default_value=os.path.join(HERE, "bad_params.yaml")),
            Node(package="oft_policy", executable="no_such_node", parameters=[{"a": 1}]),
            Node(package="no_such_package", executable="x", parameters=[{"a": 1}]),
            Node(
                package="oft_policy", executable="executor_node", name="executor_node",
                parameters=[LaunchConfiguration("params"), {"backend": "ros2_control", "control_rate": 5.0},
                            os.path.join(HERE, "missing.yaml")],
                remappings=[("/oft/action_chunk", "/chunks"), ("/not/a/topic/of/it", "/x")],
            ),
            LifecycleNode(package="oft_policy", executable="executor_node", name="executor_node", namespace="",
                          parameters=[{"backend": "ros2_control"}]),
            Node(package="oft_policy", executable="executor_node", parameters=[{"backend": "ros2_control", "use_sim_time": LaunchConfiguration("typo_arg")}]),
            IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(HERE, "nowhere.launch.py"))),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(os.path.join(HERE, "child.launch.py")),
                launch_arguments={"undeclared_in_child": "1"}.items(),
            ),
        ])

    def _hidden():
        return Node(package="oft_policy", executable="executor_node")
    """
)

CHILD_LAUNCH = textwrap.dedent(
    """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    def generate_launch_description():
        return LaunchDescription([DeclareLaunchArgument("known", default_value="x")])
    """
)


def test_checker_reports_each_fault_of_a_broken_launch_file(tmp_path, provider):
    (tmp_path / "broken.launch.py").write_text(BROKEN_LAUNCH)
    (tmp_path / "child.launch.py").write_text(CHILD_LAUNCH)
    (tmp_path / "bad_params.yaml").write_text(
        "executor_node:\n  ros__parameters:\n    control_rate_hz: 20.0\n    not_a_parameter: 3\n"
    )
    report = check_launch_file(tmp_path / "broken.launch.py", {}, provider)
    text = "\n".join(report.problems)
    expected = [
        "has no executable 'no_such_node'",
        "package 'no_such_package' is not in the ament index",
        "bad_params.yaml: 'not_a_parameter' is not a parameter ExecutorNode declares",
        "parameter 'control_rate' is not declared by ExecutorNode",
        "missing.yaml does not exist",
        "remapping '/not/a/topic/of/it' matches no topic or service of ExecutorNode",
        "launched as LifecycleNode but ExecutorNode is not a lifecycle node",
        "LaunchConfiguration('typo_arg') has no DeclareLaunchArgument",
        "nowhere.launch.py does not exist",
        "argument 'undeclared_in_child' given but not declared by child.launch.py",
        "is not reached by static evaluation",
    ]
    missing = [fragment for fragment in expected if fragment not in text]
    assert not missing, f"checker missed {missing}; it reported:\n{text}"
    assert "remapping '/oft/action_chunk'" not in text, "a remapping of a topic the executor uses was reported"
    assert not report.ok
    # the console script says so through its exit status
    from oft_bringup.launch_check import main

    assert main([str(tmp_path / "broken.launch.py")]) == 1
    assert main([str(LAUNCH_DIR / "record.launch.py"), f"output:={tmp_path / 'bag'}"]) == 0


def test_checker_reports_a_wrong_parameter_type(tmp_path, provider):
    """A value rclpy refuses (text for a double) fails when the node is built as launched."""
    (tmp_path / "typed.launch.py").write_text(textwrap.dedent(
        """
        from launch import LaunchDescription
        from launch_ros.actions import Node

        def generate_launch_description():
            return LaunchDescription([Node(package="oft_policy", executable="executor_node",
                                           parameters=[{"backend": "ros2_control", "control_rate_hz": "fast"}])])
        """
    ))
    report = check_launch_file(tmp_path / "typed.launch.py", {}, provider)
    assert any("building ExecutorNode" in p for p in report.problems), report.problems


def test_parameter_file_sections_match_as_rclpy_does():
    from oft_bringup.node_interface import flatten_parameters, yaml_sections_for

    data = {
        "/**": {"ros__parameters": {"use_sim_time": True}},
        "executor_node": {"ros__parameters": {"drift": {"warn": 0.1}}},
        "robot": {"executor_node": {"ros__parameters": {"control_rate_hz": 100.0}}},
        "policy_node": {"ros__parameters": {"device": "cuda"}},
    }
    plain = [flatten_parameters(s) for s in yaml_sections_for(data, "executor_node", "/")]
    assert plain == [{"use_sim_time": True}, {"drift.warn": 0.1}]
    namespaced = [flatten_parameters(s) for s in yaml_sections_for(data, "executor_node", "/robot")]
    assert namespaced == [{"use_sim_time": True}, {"control_rate_hz": 100.0}]
