"""Parameter files of oft_bringup against the nodes that read them.

Each node is built in-process with rclpy (a private context), as `ros2 run`
or a launch file would build it:
- every parameter it declares has a description and a value in its YAML file,
  and every key of the YAML is a parameter it declares;
- the YAML, passed through rclpy's own `--params-file` handling, sets every
  value in the node (a copy with changed values shows the file wins over the
  node's defaults).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from oft_bringup.node_interface import flatten_parameters, introspect_node, yaml_sections_for

CONFIG = Path(__file__).resolve().parents[1] / "config"


@dataclass(frozen=True)
class NodeParams:
    package: str
    executable: str
    node_name: str
    yaml_file: str
    changed: dict  # values that differ from the node's defaults, written into a copy of the YAML

    @property
    def id(self):
        return self.executable


NODES = [
    NodeParams(
        "oft_policy", "executor_node", "executor_node", "executor_node.yaml",
        changed={"control_rate_hz": 100.0, "drift_warn_threshold": 0.07, "chunk_policy": "blend",
                 "velocity_limits": [2.0] * 14},
    ),
    NodeParams(
        "oft_sim", "aloha_sim", "aloha_sim", "aloha_sim.yaml",
        changed={"image_width": 64, "step_timeout_s": 0.1, "cameras": ["cam_high"], "wait_for_chunks": True},
    ),
    NodeParams(
        "oft_policy", "policy_node", "policy_node", "policy_node.yaml",
        changed={"trigger": "fixed_rate", "fixed_rate_hz": 2.0, "max_input_age_s": 0.25,
                 "camera_topics": ["/camera/color/image_raw"]},
    ),
]


def _yaml_parameters(config: NodeParams, path: Path = None) -> dict:
    data = yaml.safe_load((path or CONFIG / config.yaml_file).read_text())
    sections = list(yaml_sections_for(data, config.node_name))
    assert len(sections) == 1, f"{config.yaml_file}: expected one section for {config.node_name}, found {len(sections)}"
    return flatten_parameters(sections[0])


_defaults_cache = {}


def _declared(config: NodeParams):
    if config.id not in _defaults_cache:
        _defaults_cache[config.id] = introspect_node(config.package, config.executable).own_parameters()
    return _defaults_cache[config.id]


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("config", NODES, ids=lambda c: c.id)
def test_every_parameter_is_described_and_in_its_yaml(config):
    declared = _declared(config)
    in_yaml = _yaml_parameters(config)
    undocumented = sorted(name for name, info in declared.items() if not info.description.strip())
    assert not undocumented, f"{config.executable}: parameters without a description: {undocumented}"
    # A parameter the node leaves unset by default (its default is "derive it") cannot be written
    # as a YAML value; the file must still show it, commented out, with what unset means.
    yaml_text = (CONFIG / config.yaml_file).read_text()
    unset = {name for name, info in declared.items() if info.value is None}
    missing = sorted(
        name for name in set(declared) - set(in_yaml)
        if not (name in unset and re.search(rf"^\s*#\s*{re.escape(name)}:", yaml_text, re.MULTILINE))
    )
    assert not missing, f"{config.yaml_file} lacks a value for declared parameters {missing}"
    unknown = sorted(set(in_yaml) - set(declared) - {"use_sim_time"})
    assert not unknown, f"{config.yaml_file} sets parameters {config.executable} does not declare: {unknown}"


@pytest.mark.parametrize("config", NODES, ids=lambda c: c.id)
def test_yaml_values_take_effect(config, tmp_path):
    declared = _declared(config)
    changed = dict(config.changed)
    for name, value in changed.items():
        assert not _same(declared[name].value, value), f"{name}: pick a value other than the default to see it applied"
    data = yaml.safe_load((CONFIG / config.yaml_file).read_text())
    data[config.node_name]["ros__parameters"].update(changed)
    edited = tmp_path / config.yaml_file
    edited.write_text(yaml.safe_dump(data))

    loaded = introspect_node(config.package, config.executable, params_files=[edited]).parameters
    for name, value in _yaml_parameters(config, edited).items():
        assert _same(loaded[name].value, value), f"{name}: node has {loaded[name].value!r}, file says {value!r}"


def test_executor_limits_are_the_vx300s_ones():
    """The YAML writes the limits out; they must stay the node's vx300s defaults, in joint_names order."""
    from oft_policy.runtime.limits import JointLimits

    params = _yaml_parameters(NODES[0])
    limits = JointLimits.vx300s(params["joint_names"])
    assert params["position_limits_lower"] == pytest.approx(limits.lower.tolist())
    assert params["position_limits_upper"] == pytest.approx(limits.upper.tolist())
    assert params["velocity_limits"] == pytest.approx(limits.max_velocity.tolist())


def test_parameter_file_sections_match_as_rclpy_does():
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
