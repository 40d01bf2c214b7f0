"""Names the whole suite shares: joint order, topics, services, robot names.

Defined once here and imported everywhere (nodes, training, simulator,
launch files, tests). Plain Python: importing it needs no ROS. The defaults are
the ALOHA ROS 2 stack's (Interbotix/aloha with interbotix_xs_sdk and
realsense2_camera): a suite started with them talks to a real ALOHA unchanged.
"""

ARM_JOINTS = (
    "waist",
    "shoulder",
    "elbow",
    "forearm_roll",
    "wrist_angle",
    "wrist_rotate",
    "gripper",
)
"""The 7 per-arm dimensions of the policy (6 arm joints + the gripper), in dataset order."""

ARM_GROUP_JOINTS = ARM_JOINTS[:6]
"""The xs driver's joint group `arm`: the joints of one JointGroupCommand, in its order."""

GRIPPER_JOINT = "gripper"
"""The xs driver's single joint for the gripper motor (JointSingleCommand, radians in position modes)."""

FINGER_JOINTS = ("left_finger", "right_finger")
"""Finger slides (metres) the xs driver appends to an arm's joint states; right = -left."""

DRIVER_JOINT_STATE_NAMES = ARM_JOINTS + FINGER_JOINTS
"""The 9 names of one arm's /<robot>/joint_states, in the driver's order."""

ARM_SIDES = ("left", "right")

ALOHA_JOINT_NAMES = tuple(f"{side}_{joint}" for side in ARM_SIDES for joint in ARM_JOINTS)
"""The 14 action/proprio dimensions of bimanual ALOHA, in LeRobot's ALOHA dataset order."""

FOLLOWER_ROBOTS = ("follower_left", "follower_right")
LEADER_ROBOTS = ("leader_left", "leader_right")

FOLLOWER_JOINT_STATE_TOPICS = tuple(f"/{robot}/joint_states" for robot in FOLLOWER_ROBOTS)
LEADER_JOINT_STATE_TOPICS = tuple(f"/{robot}/joint_states" for robot in LEADER_ROBOTS)

CAMERA_NAMES = ("cam_high", "cam_left_wrist", "cam_right_wrist")

CAMERA_TOPIC_PATTERN = "/{camera}/camera/color/image_rect_raw"
"""Image topic of a camera: realsense2_camera (4.55 and later) in the namespace of the camera's
name with node name `camera`, as the ALOHA bringup starts it. The one setting every node, script
and launch file takes (`camera_topic_pattern`) to follow another layout."""

ACTION_CHUNK_TOPIC = "/oft/action_chunk"
DRIFT_TOPIC = "/oft/drift"
EXECUTOR_STATUS_TOPIC = "/oft/executor_status"
DIAGNOSTICS_TOPIC = "/diagnostics"

INSTRUCTION_TOPIC = "/oft/instruction"
"""The instruction the robot is given (std_msgs/String, latched: INSTRUCTION_QOS). The policy node publishes
what it runs; a recording keeps it so that each episode is exported with its own instruction."""

COMMANDED_ACTION_TOPIC = "/oft/commanded_action"
"""14 commanded joint positions (std_msgs/Float64MultiArray, ALOHA order) where a recording has them (scripted demos)."""

# Interbotix xs driver command topics, per robot namespace.
INTERBOTIX_GROUP_COMMAND_TOPIC = "commands/joint_group"
INTERBOTIX_SINGLE_COMMAND_TOPIC = "commands/joint_single"
INTERBOTIX_ARM_GROUP = "arm"

INTERBOTIX_SERVICES = {
    "set_operating_modes": "set_operating_modes",
    "torque_enable": "torque_enable",
    "get_robot_info": "get_robot_info",
    "reboot_motors": "reboot_motors",
}
"""xs driver services, relative to each robot namespace."""


def camera_topic(camera_name: str, pattern: str = CAMERA_TOPIC_PATTERN) -> str:
    """Image topic of a camera name under `pattern` (`cam_high` -> `/cam_high/camera/color/image_rect_raw`)."""
    if "{camera}" not in pattern:
        raise ValueError(f"camera topic pattern {pattern!r} must contain {{camera}}")
    return pattern.format(camera=camera_name)


def camera_topics(cameras=CAMERA_NAMES, pattern: str = CAMERA_TOPIC_PATTERN) -> tuple:
    return tuple(camera_topic(camera, pattern) for camera in cameras)


CAMERA_TOPICS = camera_topics()


def arm_joint_names(side: str) -> tuple:
    """The 7 suite-wide names of one arm (`left` -> `left_waist` .. `left_gripper`)."""
    if side not in ARM_SIDES:
        raise ValueError(f"unknown arm side {side!r}; expected one of {ARM_SIDES}")
    return tuple(f"{side}_{joint}" for joint in ARM_JOINTS)


def is_gripper(joint_name: str) -> bool:
    """An action/proprio dimension that is a gripper (`gripper` or `<side>_gripper`), in the normalized units."""
    return joint_name == GRIPPER_JOINT or joint_name.endswith(f"_{GRIPPER_JOINT}")
