"""Output backends of the executor: one full command vector in, per-arm messages out.

- `interbotix`: the Interbotix xs driver interface used by the ALOHA ROS 2 stack,
  `JointGroupCommand` (group `arm`, the 6 arm joints) on `/<robot>/commands/joint_group`
  and `JointSingleCommand` (`gripper`) on `/<robot>/commands/joint_single`.
  interbotix_xs_msgs is imported only when this backend is built.
- `ros2_control` with `forward_position`: `std_msgs/Float64MultiArray` of the arm's values
  in chunk order to a forward position controller; with `joint_trajectory`: a one-point
  `trajectory_msgs/JointTrajectory` reaching the command one control period ahead.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from oft_policy.qos import STATUS_QOS

BACKENDS = ("interbotix", "ros2_control")
ROS2_CONTROL_INTERFACES = ("forward_position", "joint_trajectory")


class BackendError(ValueError):
    """A backend that cannot be built from the given parameters."""


class InterbotixBackend:
    def __init__(self, node, robot_names: Sequence[str], arm_columns: List[slice], arm_joint_names: Sequence[str],
                 group_topic: str, single_topic: str, group_name: str, gripper_joint: str):
        try:
            from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
        except ImportError as exc:
            raise BackendError(
                "backend 'interbotix' needs the interbotix_xs_msgs package (source the Interbotix workspace), "
                "or choose backend 'ros2_control'"
            ) from exc
        if gripper_joint not in arm_joint_names:
            raise BackendError(f"gripper_joint {gripper_joint!r} is not one of arm_joint_names {list(arm_joint_names)}")
        self._group_type, self._single_type = JointGroupCommand, JointSingleCommand
        self._gripper = list(arm_joint_names).index(gripper_joint)
        self._group_indices = [k for k in range(len(arm_joint_names)) if k != self._gripper]
        self._group_name, self._gripper_name = group_name, gripper_joint
        self._arm_columns = arm_columns
        self._publishers = [
            (
                node.create_publisher(JointGroupCommand, f"/{robot}/{group_topic}", STATUS_QOS),
                node.create_publisher(JointSingleCommand, f"/{robot}/{single_topic}", STATUS_QOS),
            )
            for robot in robot_names
        ]

    def send(self, command: np.ndarray) -> None:
        for (group_pub, single_pub), columns in zip(self._publishers, self._arm_columns):
            arm = command[columns]
            group = self._group_type(name=self._group_name, cmd=[float(arm[k]) for k in self._group_indices])
            group_pub.publish(group)
            single_pub.publish(self._single_type(name=self._gripper_name, cmd=float(arm[self._gripper])))

    def topics(self) -> List[str]:
        return [pub.topic_name for pair in self._publishers for pub in pair]


class ForwardPositionBackend:
    def __init__(self, node, topics: Sequence[str], arm_columns: List[slice]):
        from std_msgs.msg import Float64MultiArray

        self._type = Float64MultiArray
        self._arm_columns = arm_columns
        self._publishers = [node.create_publisher(Float64MultiArray, topic, STATUS_QOS) for topic in topics]

    def send(self, command: np.ndarray) -> None:
        for pub, columns in zip(self._publishers, self._arm_columns):
            pub.publish(self._type(data=command[columns].astype(float).tolist()))

    def topics(self) -> List[str]:
        return [pub.topic_name for pub in self._publishers]


class JointTrajectoryBackend:
    def __init__(self, node, topics: Sequence[str], arm_columns: List[slice], arm_joint_names: Sequence[str],
                 control_period_s: float):
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        self._types = (JointTrajectory, JointTrajectoryPoint)
        nanos = int(round(control_period_s * 1e9))
        self._reach_in = Duration(sec=nanos // 1_000_000_000, nanosec=nanos % 1_000_000_000)
        self._joint_names = list(arm_joint_names)
        self._arm_columns = arm_columns
        self._publishers = [node.create_publisher(JointTrajectory, topic, STATUS_QOS) for topic in topics]

    def send(self, command: np.ndarray) -> None:
        trajectory_type, point_type = self._types
        for pub, columns in zip(self._publishers, self._arm_columns):
            point = point_type(positions=command[columns].astype(float).tolist(), time_from_start=self._reach_in)
            pub.publish(trajectory_type(joint_names=self._joint_names, points=[point]))

    def topics(self) -> List[str]:
        return [pub.topic_name for pub in self._publishers]


def make_backend(node, params: dict, arm_columns: List[slice], control_period_s: float):
    """Build the backend the parameters select (see the executor's parameter table)."""
    backend = params["backend"]
    arms = len(arm_columns)
    if backend == "interbotix":
        robots = params["robot_names"]
        if len(robots) != arms:
            raise BackendError(f"{len(robots)} robot_names for {arms} arms")
        return InterbotixBackend(
            node, robots, arm_columns, params["arm_joint_names"], params["interbotix_group_topic"],
            params["interbotix_single_topic"], params["interbotix_arm_group"], params["gripper_joint"],
        )
    if backend == "ros2_control":
        topics = params["command_topics"]
        if len(topics) != arms:
            raise BackendError(f"{len(topics)} command_topics for {arms} arms")
        interface = params["ros2_control_interface"]
        if interface == "forward_position":
            return ForwardPositionBackend(node, topics, arm_columns)
        if interface == "joint_trajectory":
            return JointTrajectoryBackend(node, topics, arm_columns, params["arm_joint_names"], control_period_s)
        raise BackendError(f"unknown ros2_control_interface {interface!r}; expected one of {ROS2_CONTROL_INTERFACES}")
    raise BackendError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
