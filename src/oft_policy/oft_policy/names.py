"""Names the whole suite shares: joint order, topics, services, robot names.

Defined once here and imported everywhere (nodes, training, simulator,
launch files, tests). Plain Python: importing it needs no ROS.
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
"""Joint names one Interbotix vx300s arm publishes in its joint states (6 arm joints + gripper)."""

ARM_SIDES = ("left", "right")

ALOHA_JOINT_NAMES = tuple(f"{side}_{joint}" for side in ARM_SIDES for joint in ARM_JOINTS)
"""The 14 action/proprio dimensions of bimanual ALOHA, in LeRobot's ALOHA dataset order."""

FOLLOWER_ROBOTS = ("follower_left", "follower_right")
LEADER_ROBOTS = ("leader_left", "leader_right")

FOLLOWER_JOINT_STATE_TOPICS = tuple(f"/{robot}/joint_states" for robot in FOLLOWER_ROBOTS)
LEADER_JOINT_STATE_TOPICS = tuple(f"/{robot}/joint_states" for robot in LEADER_ROBOTS)

CAMERA_NAMES = ("cam_high", "cam_left_wrist", "cam_right_wrist")
CAMERA_TOPICS = tuple(f"/{camera}/image_raw" for camera in CAMERA_NAMES)

ACTION_CHUNK_TOPIC = "/oft/action_chunk"
DRIFT_TOPIC = "/oft/drift"
EXECUTOR_STATUS_TOPIC = "/oft/executor_status"
DIAGNOSTICS_TOPIC = "/diagnostics"

COMMANDED_ACTION_TOPIC = "/oft/commanded_action"
"""14 commanded joint positions (std_msgs/Float64MultiArray, ALOHA order) where a recording has them (scripted demos)."""

# Interbotix xs driver command topics, per robot namespace.
INTERBOTIX_GROUP_COMMAND_TOPIC = "commands/joint_group"
INTERBOTIX_SINGLE_COMMAND_TOPIC = "commands/joint_single"
INTERBOTIX_ARM_GROUP = "arm"

# ros2_control forward position controller, one per arm.
FORWARD_POSITION_COMMAND_TOPICS = tuple(
    f"/{robot}/forward_position_controller/commands" for robot in FOLLOWER_ROBOTS
)


def camera_topic(camera_name: str) -> str:
    """Default image topic of a camera name (`cam_high` -> `/cam_high/image_raw`)."""
    return f"/{camera_name}/image_raw"


def arm_joint_names(side: str) -> tuple:
    """The 7 suite-wide names of one arm (`left` -> `left_waist` .. `left_gripper`)."""
    if side not in ARM_SIDES:
        raise ValueError(f"unknown arm side {side!r}; expected one of {ARM_SIDES}")
    return tuple(f"{side}_{joint}" for joint in ARM_JOINTS)
