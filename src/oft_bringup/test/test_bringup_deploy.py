"""Deployment pieces that cannot run here, checked for what can be checked:
colcon.meta (parsed by colcon itself), the rqt perspective (its plots name real
fields of the suite's messages), the recorder's QoS overrides, and the Docker
compose file (non-root images, host networking, read-only model mount, launch
arguments that aloha_oft.launch.py declares).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import yaml

from oft_bringup import system
from oft_policy import names

REPO = Path(__file__).resolve().parents[3]
BRINGUP = REPO / "src" / "oft_bringup"
PACKAGES = {p.parent.name for p in (REPO / "src").glob("*/package.xml")}


def test_colcon_meta_is_read_by_colcon_for_real_packages():
    meta = json.loads((REPO / "colcon.meta").read_text())
    assert set(meta["names"]) <= PACKAGES, f"colcon.meta names unknown packages: {set(meta['names']) - PACKAGES}"
    # colcon itself, run from the repository root as scripts/setup.sh does, attaches the settings.
    listed = subprocess.run(
        [sys.executable, "-m", "colcon", "--log-base", "/dev/null", "info", "--base-paths", "src",
         "--packages-select", *meta["names"]],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    for package, settings in meta["names"].items():
        block = listed.stdout.split(f"name: {package}\n", 1)[1].split("\npath:", 1)[0]
        for key, value in settings.items():
            assert f"{key}: {value!r}" in block, f"colcon did not attach {key} to {package}:\n{block}"


def _perspective_plugins():
    perspective = json.loads((BRINGUP / "config" / "oft_drift.perspective").read_text())
    manager = perspective["groups"]["pluginmanager"]
    running = ast.literal_eval(manager["keys"]["running-plugins"]["repr"])
    return running, manager["groups"]


def test_perspective_plots_drift_and_shows_executor_status():
    from oft_msgs.msg import DriftReport, ExecutorStatus

    running, groups = _perspective_plugins()
    # every running plugin instance has its settings group, and nothing else is there
    instances = {f"plugin__{plugin.replace('/', '__')}__{n}" for plugin, ns in running.items() for n in ns}
    assert instances == set(groups)
    assert "rqt_topic/TopicPlugin" in running
    plotted = []
    for name, group in groups.items():
        if name.startswith("plugin__rqt_plot__Plot__"):
            plotted += ast.literal_eval(group["groups"]["plugin"]["keys"]["topics"]["repr"])
    drift_fields = {t[len(names.DRIFT_TOPIC) + 1:] for t in plotted if t.startswith(names.DRIFT_TOPIC + "/")}
    assert drift_fields == {"mean_drift", "trend", "warn_threshold", "critical_threshold"}
    status_fields = {t[len(names.EXECUTOR_STATUS_TOPIC) + 1:] for t in plotted if t.startswith(names.EXECUTOR_STATUS_TOPIC + "/")}
    assert status_fields, "no ExecutorStatus field plotted"
    assert drift_fields <= set(DriftReport.get_fields_and_field_types())
    assert status_fields <= set(ExecutorStatus.get_fields_and_field_types())


def test_record_qos_overrides_pin_cameras_best_effort():
    overrides = yaml.safe_load((BRINGUP / "config" / system.QOS_OVERRIDES_FILE).read_text())
    # The committed file is what the default camera pattern generates (the record launch makes others).
    assert overrides == system.qos_overrides(names.CAMERA_TOPIC_PATTERN)
    assert set(overrides) == set(names.CAMERA_TOPICS)
    for profile in overrides.values():
        assert profile["reliability"] == "best_effort" and profile["history"] == "keep_last" and profile["depth"] > 0


def test_compose_runs_both_sides_as_launched():
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    declared = system.aloha_oft().argument_names
    assert set(compose["services"]) == {"policy", "executor"}
    for name, service in compose["services"].items():
        assert service["network_mode"] == "host", f"{name}: DDS discovery needs host networking"
        assert service["ipc"] == "host", f"{name}: Fast DDS shared memory needs the host IPC namespace"
        (volume,) = service["volumes"]
        assert volume["target"] == "/models/checkpoint" and volume["read_only"] is True
        dockerfile = REPO / service["build"]["dockerfile"]
        text = dockerfile.read_text()
        users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
        assert users and all(u not in ("root", "0") for u in users), f"{dockerfile.name} must run as a non-root user"
        command = service["command"]
        assert command[:4] == ["ros2", "launch", "oft_bringup", "aloha_oft.launch.py"]
        arguments = [a.split(":=", 1)[0] for a in command[4:]]
        assert set(arguments) <= set(declared), f"{name}: undeclared launch arguments {set(arguments) - set(declared)}"
        assert "checkpoint" in arguments
    calibrations = {name: [a for a in s["command"] if a.startswith("calibration:=")] for name, s in compose["services"].items()}
    assert calibrations["policy"] == calibrations["executor"] and len(calibrations["policy"]) == 1, calibrations
    assert "run_executor:=false" in compose["services"]["policy"]["command"]
    assert "run_policy:=false" in compose["services"]["executor"]["command"]
    assert compose["services"]["policy"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
