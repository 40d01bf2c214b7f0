"""The robot boundary without ROS: calibration presets, conversions, convention records and refusals,
the emulated xs driver's modes, and the executor's driver set-up plan."""

import numpy as np
import pytest

from oft_policy import calibration as cal
from oft_policy.runtime.driver_setup import DriverSetup, follower_setup_plan
from oft_policy.testing.xs_driver import DriverRefusal, XsArmState

ALOHA2 = cal.PRESETS["aloha2"]


def test_presets_are_the_published_numbers():
    assert (ALOHA2.follower_joint.closed, ALOHA2.follower_joint.open) == (0.6197, 1.6214)
    assert (ALOHA2.leader_joint.closed, ALOHA2.leader_joint.open) == (-0.0552, 0.8298)
    assert (ALOHA2.follower_finger.closed, ALOHA2.follower_finger.open) == (0.0440, 0.0579)
    original = cal.PRESETS["aloha1"]
    assert (original.follower_joint.closed, original.follower_joint.open) == (-0.6213, 1.4910)
    assert cal.DEFAULT_CALIBRATION is ALOHA2


def test_teleoperation_maps_leader_to_follower_through_the_normalized_value():
    leader = np.array([-0.0552, 0.3873, 0.8298])
    action = ALOHA2.action_gripper(leader)
    assert np.allclose(action, [0.0, 0.5, 1.0], atol=1e-4)
    assert np.allclose(ALOHA2.follower_gripper_command(action), [0.6197, 1.12055, 1.6214], atol=1e-4)
    assert np.allclose(ALOHA2.leader_gripper_joint(action), leader)
    assert ALOHA2.observed_gripper(0.0579) == pytest.approx(1.0)


def test_arm_command_is_six_radians_and_the_follower_gripper_joint():
    arm, gripper = cal.arm_command([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0], ALOHA2)
    assert arm == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) and gripper == pytest.approx(1.6214)
    with pytest.raises(cal.ConventionError, match="7 values"):
        cal.arm_command([0.0] * 6, ALOHA2)


def test_overrides_and_records_round_trip_and_bad_numbers_are_refused():
    rig = ALOHA2.with_overrides(follower_joint=[0.6, 1.7], leader_finger=None)
    assert rig.follower_joint == cal.Span(0.6, 1.7) and rig.leader_joint == ALOHA2.leader_joint
    assert cal.Calibration.from_dict(rig.to_dict()) == rig
    with pytest.raises(cal.CalibrationError, match="both"):
        ALOHA2.with_overrides(leader_joint=[0.3, 0.3])
    with pytest.raises(cal.CalibrationError, match="closed, open"):
        ALOHA2.with_overrides(follower_finger=[0.1])
    with pytest.raises(cal.CalibrationError, match="unknown calibration"):
        cal.calibration_preset("aloha3")


def test_conventions_are_checked_and_calibrations_compared():
    record = cal.convention_record(ALOHA2)
    assert cal.check_convention(record, "x")["name"] == cal.CONVENTION
    with pytest.raises(cal.ConventionError, match="records no 'convention'"):
        cal.check_convention(None, "checkpoint c")
    with pytest.raises(cal.ConventionError, match="robot_units"):
        cal.check_convention({"name": "robot_units"}, "dataset d")
    assert cal.calibration_mismatch(record, cal.convention_record(ALOHA2)) is None
    assert cal.calibration_mismatch(record, cal.convention_record(None)) is None  # data already normalized
    assert "follower_joint" in cal.calibration_mismatch(record, cal.convention_record(cal.PRESETS["aloha1"]))


# ---- the emulated xs driver -------------------------------------------------------------------
def test_driver_starts_as_alohas_follower_config_and_reads_gripper_commands_by_mode():
    driver = XsArmState(ALOHA2)
    assert (driver.arm.mode, driver.gripper.mode) == ("position", "linear_position")
    # Radians sent to a gripper that reads metres: no valid goal.
    with pytest.raises(DriverRefusal, match="outside the finger's travel"):
        driver.gripper_opening("gripper", 1.2)
    assert driver.gripper_opening("gripper", 0.0579) == pytest.approx(1.0)  # metres, in linear_position
    driver.set_operating_modes("single", "gripper", "current_based_position", "velocity", 0, 0)
    assert driver.gripper_opening("gripper", 1.12055) == pytest.approx(0.5, abs=1e-4)
    assert driver.robot_info("single", "gripper")["mode"] == "current_based_position"
    assert driver.robot_info("single", "gripper")["joint_names"] == ["left_finger"]


def test_driver_refuses_wrong_group_lengths_unknown_modes_and_torque_off():
    driver = XsArmState(ALOHA2)
    assert driver.arm_goals("arm", [0.0] * 6) == [0.0] * 6
    with pytest.raises(DriverRefusal, match="6 joints, command has 7"):
        driver.arm_goals("arm", [0.0] * 7)
    with pytest.raises(DriverRefusal, match="not one of"):
        driver.set_operating_modes("group", "arm", "torque", "velocity", 0, 0)
    driver.torque_enable("group", "arm", False)
    with pytest.raises(DriverRefusal, match="torque is off"):
        driver.arm_goals("arm", [0.0] * 6)
    names, positions = driver.joint_state([0.0] * 6, 1.0)
    assert names[6:] == ["gripper", "left_finger", "right_finger"]
    assert positions[6:] == pytest.approx([1.6214, 0.0579, -0.0579])


def test_setup_plan_sets_modes_enables_torque_and_confirms():
    plan = follower_setup_plan(["follower_left"])
    assert [(c.service, c.request.get("name"), c.request.get("mode")) for c in plan[:2]] == [
        ("set_operating_modes", "arm", "position"), ("set_operating_modes", "gripper", "current_based_position")]
    setup = DriverSetup(plan, call_timeout_s=1.0)
    for call in plan[:4]:
        setup.answered({}, 0.0)
    setup.answered({"mode": "position"}, 0.0)
    setup.answered({"mode": "linear_position"}, 0.0)  # the driver did not take the gripper mode
    assert not setup.done and "did not take the operating modes" in setup.failure


def test_setup_fails_on_a_missing_service_after_its_timeout():
    setup = DriverSetup(follower_setup_plan(["follower_right"]), call_timeout_s=2.0)
    assert setup.check_deadline(1.0, "service not available")
    assert not setup.check_deadline(2.5, "service not available")
    assert "/follower_right/set_operating_modes" in setup.status() and "nothing is sent" in setup.status()
