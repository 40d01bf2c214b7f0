"""The emulated xs driver's ROS side: one follower's command topics and services in its namespace.

Shared by the MuJoCo simulator (oft_sim) and the light fake robot, so both answer exactly
as `oft_policy.testing.xs_driver.XsArmState` decides, on the real driver's names and QoS.
"""

from __future__ import annotations

from typing import Callable

from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand, JointTrajectoryCommand
from interbotix_xs_msgs.srv import OperatingModes, Reboot, RobotInfo, TorqueEnable

from oft_policy import names
from oft_policy.testing.xs_driver import DriverRefusal, XsArmState

DRIVER_QOS = 10
"""interbotix_xs_sdk's publishers and subscriptions: reliable, keep last 10."""


def serve_xs_driver(node, robot: str, driver: XsArmState, on_group: Callable, on_single: Callable,
                    on_refused: Callable[[str], None], services: bool = True) -> None:
    """Subscribe `robot`'s command topics and (unless `services` is false: a driver without them) offer
    its driver services on `node`.

    on_group(msg) / on_single(msg) get the command messages; on_refused(reason) hears what is refused."""
    def topic(name: str) -> str:
        return f"/{robot}/{name}"

    node.create_subscription(JointGroupCommand, topic(names.INTERBOTIX_GROUP_COMMAND_TOPIC), on_group, DRIVER_QOS)
    node.create_subscription(JointSingleCommand, topic(names.INTERBOTIX_SINGLE_COMMAND_TOPIC), on_single, DRIVER_QOS)
    node.create_subscription(JointTrajectoryCommand, topic("commands/joint_trajectory"),
                             lambda msg: on_refused(f"{robot}: joint_trajectory commands are not emulated"), DRIVER_QOS)
    if not services:
        return
    log = node.get_logger()

    def call(response, method, *args):
        # The real driver answers every call with an empty response and logs what it refused.
        try:
            method(*args)
            log.info(f"{robot}: {method.__name__}{args}")
        except DriverRefusal as refusal:
            log.error(f"{robot}: {method.__name__} refused: {refusal}")
        return response

    def robot_info(request, response):
        try:
            fields = driver.robot_info(request.cmd_type, request.name)
        except DriverRefusal as refusal:
            log.error(f"{robot}: get_robot_info refused: {refusal}")
            return response
        for key, value in fields.items():
            setattr(response, key, value)
        return response

    services = names.INTERBOTIX_SERVICES
    node.create_service(OperatingModes, topic(services["set_operating_modes"]), lambda q, r: call(
        r, driver.set_operating_modes, q.cmd_type, q.name, q.mode, q.profile_type,
        q.profile_velocity, q.profile_acceleration))
    node.create_service(TorqueEnable, topic(services["torque_enable"]),
                        lambda q, r: call(r, driver.torque_enable, q.cmd_type, q.name, q.enable))
    node.create_service(Reboot, topic(services["reboot_motors"]),
                        lambda q, r: call(r, driver.reboot, q.cmd_type, q.name, q.enable))
    node.create_service(RobotInfo, topic(services["get_robot_info"]), robot_info)


def joint_state_msg(driver: XsArmState, stamp, arm_positions, opening, arm_velocities=None, opening_rate=0.0):
    """The driver's sensor_msgs/JointState (9 names, robot units) for one arm."""
    from sensor_msgs.msg import JointState

    joint_names, position = driver.joint_state(arm_positions, opening)
    finger = driver.calibration.follower_finger
    gripper = driver.calibration.follower_joint
    finger_rate = float(opening_rate) * (finger.open - finger.closed)
    velocity = [*(float(v) for v in (arm_velocities if arm_velocities is not None else [0.0] * 6)),
                float(opening_rate) * (gripper.open - gripper.closed), finger_rate, -finger_rate]
    msg = JointState(name=joint_names, position=position, velocity=velocity)
    msg.header.stamp = stamp
    return msg
