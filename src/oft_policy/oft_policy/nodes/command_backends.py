"""Output backends of the executor: the robot boundary for commands.

A backend takes one full command vector in the policy's convention (oft_policy.calibration:
arm joints in radians, grippers normalized) and speaks one robot interface. A backend is
one class with `PARAMETERS` (its own parameter group, declared by the executor node), a
constructor `(node, params, arm_columns, calibration)`, `ready`, `status()`, `send(command)`
and `topics()`; `BACKENDS` registers it by name.

- `interbotix`: the ALOHA ROS 2 stack's follower drivers (interbotix_xs_sdk), one per robot
  namespace: before anything is sent, each driver's operating modes are set and confirmed
  and torque is switched on through its services (oft_policy.runtime.driver_setup); then
  every tick sends `JointGroupCommand` (group `arm`, exactly the 6 arm joints, rad) on
  `/<robot>/commands/joint_group` and `JointSingleCommand` (`gripper`, the follower's
  gripper joint in rad from the calibration) on `/<robot>/commands/joint_single`.
"""

from __future__ import annotations

import time
from typing import List

import numpy as np
from rclpy.clock import Clock, ClockType

from oft_policy import names
from oft_policy.calibration import Calibration, arm_command
from oft_policy.nodes.params import ParamSpec
from oft_policy.qos import STATUS_QOS
from oft_policy.runtime.driver_setup import DriverSetup, follower_setup_plan


class BackendError(ValueError):
    """A backend that cannot be built from the given parameters."""


class InterbotixBackend:
    PARAMETERS = (
        ParamSpec("robot_names", names.FOLLOWER_ROBOTS, "interbotix: robot namespace of each arm's xs driver (commands go to /<robot>/commands/...)."),
        ParamSpec("driver_setup", True, "interbotix: set and confirm the operating modes and torque through the driver's services before the first command; false only for a driver set up by other means."),
        ParamSpec("driver_call_timeout_s", 5.0, "interbotix: seconds to wait for each driver service (and its answer) during set-up."),
        ParamSpec("driver_retry_s", 5.0, "interbotix: after a failed set-up, seconds until it is tried again (nothing is sent meanwhile)."),
    )

    def __init__(self, node, params: dict, arm_columns: List[slice], calibration: Calibration):
        try:
            from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
            from interbotix_xs_msgs.srv import OperatingModes, RobotInfo, TorqueEnable
        except ImportError as exc:
            raise BackendError(
                "backend 'interbotix' needs the interbotix_xs_msgs package: source the Interbotix workspace "
                "(or build the suite's copy in src/interbotix_xs_msgs)"
            ) from exc
        robots = list(params["robot_names"])
        if len(robots) != len(arm_columns):
            raise BackendError(f"{len(robots)} robot_names for {len(arm_columns)} arms")
        self._node, self._calibration, self._arm_columns = node, calibration, arm_columns
        self._group_type, self._single_type = JointGroupCommand, JointSingleCommand
        self._publishers = [
            (node.create_publisher(JointGroupCommand, f"/{robot}/{names.INTERBOTIX_GROUP_COMMAND_TOPIC}", STATUS_QOS),
             node.create_publisher(JointSingleCommand, f"/{robot}/{names.INTERBOTIX_SINGLE_COMMAND_TOPIC}", STATUS_QOS))
            for robot in robots
        ]
        service_types = {"set_operating_modes": OperatingModes, "torque_enable": TorqueEnable, "get_robot_info": RobotInfo}
        self._clients = {
            (robot, service): node.create_client(kind, f"/{robot}/{names.INTERBOTIX_SERVICES[service]}")
            for robot in robots for service, kind in service_types.items()
        }
        self._service_types = service_types
        self._setup = DriverSetup(follower_setup_plan(robots), params["driver_call_timeout_s"])
        self._retry_s = float(params["driver_retry_s"])
        self._pending = None  # the future of the call in flight
        self._failed_at = None
        if params["driver_setup"]:
            self._setup.restart(time.monotonic())
            # Wall clock: a lockstep simulator holds sim time until the first command.
            node.create_timer(0.02, self._advance_setup, clock=Clock(clock_type=ClockType.STEADY_TIME))
        else:
            self._setup.skip()

    # ---- the set-up, one service call at a time ----------------------------------------------
    @property
    def ready(self) -> bool:
        return self._setup.done

    @property
    def failed(self) -> bool:
        return self._setup.failure is not None

    def status(self) -> str:
        return self._setup.status()

    def _advance_setup(self) -> None:
        now = time.monotonic()
        if self._setup.done:
            return
        if self._setup.failure:
            if now - self._failed_at >= self._retry_s:
                self._node.get_logger().info("retrying the driver set-up")
                self._setup.restart(now)
            return
        call = self._setup.current
        client = self._clients[(call.robot, call.service)]
        if self._pending is None:
            if client.service_is_ready():
                self._pending = client.call_async(self._service_types[call.service].Request(**call.request))
            else:
                self._setup.check_deadline(now, "service not available")
        elif self._pending.done():
            future, self._pending = self._pending, None
            self._setup.answered(_fields(future.result()), now)
            if self._setup.done:
                self._node.get_logger().info(self._setup.status())
        else:
            self._setup.check_deadline(now, "no answer")
        if self._setup.failure:
            self._pending, self._failed_at = None, now
            self._node.get_logger().error(self._setup.status())

    # ---- commands ------------------------------------------------------------------------------
    def send(self, command: np.ndarray) -> None:
        if not self.ready:
            raise RuntimeError(f"the driver is not set up ({self.status()}): nothing may be sent")
        for (group_pub, single_pub), columns in zip(self._publishers, self._arm_columns):
            arm, gripper = arm_command(command[columns], self._calibration)
            group_pub.publish(self._group_type(name=names.INTERBOTIX_ARM_GROUP, cmd=arm))
            single_pub.publish(self._single_type(name=names.GRIPPER_JOINT, cmd=gripper))

    def topics(self) -> List[str]:
        return [pub.topic_name for pair in self._publishers for pub in pair]


def _fields(response) -> dict:
    return {name: getattr(response, name) for name in response.get_fields_and_field_types()}


BACKENDS = {"interbotix": InterbotixBackend}
"""Backend name -> class; a new robot interface is one class here plus its entry."""

BACKEND_PARAMETERS = tuple(spec for backend in BACKENDS.values() for spec in backend.PARAMETERS)


def make_backend(node, params: dict, arm_columns: List[slice], calibration: Calibration):
    """Build the backend the parameters select."""
    backend = BACKENDS.get(params["backend"])
    if backend is None:
        raise BackendError(f"unknown backend {params['backend']!r}; expected one of {sorted(BACKENDS)}")
    return backend(node, params, arm_columns, calibration)
