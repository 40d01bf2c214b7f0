"""The aloha_sim node as a real process over loopback DDS: the emulated follower drivers (9-name joint
states at 100 Hz, modes, services, commands read by mode), realsense camera topics, clock, reset."""


import numpy as np
import pytest
from rcl_interfaces.srv import DescribeParameters, ListParameters
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
from interbotix_xs_msgs.srv import OperatingModes, RobotInfo

from oft_policy import names
from oft_policy.qos import SENSOR_QOS, STATUS_QOS
from oft_sim.sim_client import SimClient

pytestmark = pytest.mark.timeout(120)


def call(node, spin, wait_for, srv_type, name, request):
    client = node.create_client(srv_type, name)
    assert wait_for(client.service_is_ready, 30, spin), f"{name} not available"
    future = client.call_async(request)
    assert wait_for(future.done, 10, spin)
    return future.result()


def test_sim_node_speaks_the_follower_driver_and_camera_interfaces(console, processes, probe, wait_for):
    node, spin = probe
    sim = processes(
        "aloha_sim",
        console("oft_sim", "aloha_sim", "oft_sim.nodes.aloha_sim")
        + ["--ros-args", "-p", "image_height:=48", "-p", "image_width:=64", "-p", "seed:=2"],
    )
    joints = {topic: [] for topic in names.FOLLOWER_JOINT_STATE_TOPICS}
    images = {topic: [] for topic in names.CAMERA_TOPICS}
    clock = []
    for topic in joints:
        node.create_subscription(JointState, topic, lambda m, t=topic: joints[t].append(m), SENSOR_QOS)
    for topic in images:
        node.create_subscription(Image, topic, lambda m, t=topic: images[t].append(m), SENSOR_QOS)
    node.create_subscription(Clock, "/clock", lambda m: clock.append(m.clock.sec * 10**9 + m.clock.nanosec), 10)
    groups = [node.create_publisher(JointGroupCommand, f"/{r}/commands/joint_group", STATUS_QOS) for r in names.FOLLOWER_ROBOTS]
    singles = [node.create_publisher(JointSingleCommand, f"/{r}/commands/joint_single", STATUS_QOS) for r in names.FOLLOWER_ROBOTS]

    assert wait_for(lambda: all(len(v) > 3 for v in joints.values()) and all(images.values()) and len(clock) > 3, 60, spin), (
        f"no sensors from the simulator; its log:\n{sim.log_path.read_text()}"
    )
    assert all(t.startswith("/cam_") and t.endswith("/camera/color/image_rect_raw") for t in images)
    state = joints[names.FOLLOWER_JOINT_STATE_TOPICS[0]][-1]
    assert list(state.name) == list(names.DRIVER_JOINT_STATE_NAMES)  # 9 names, the driver's order
    assert state.position[1] == pytest.approx(-0.96, abs=0.02)  # gym-aloha's start pose
    assert state.position[8] == pytest.approx(-state.position[7])  # right_finger = -left_finger
    image = images[names.CAMERA_TOPICS[0]][-1]
    assert (image.height, image.width, image.encoding, image.step) == (48, 64, "rgb8", 192)

    # The driver as ALOHA's follower config starts it, and as its services report it.
    info = call(node, spin, wait_for, RobotInfo, "/follower_right/get_robot_info", RobotInfo.Request(cmd_type="single", name="gripper"))
    assert info.mode == "linear_position" and list(info.joint_names) == ["left_finger"]
    start = np.array(joints[names.FOLLOWER_JOINT_STATE_TOPICS[1]][-1].position)
    left = [0.4, -0.96, 1.16, 0.0, -0.3, 0.0]

    def left_waist():
        return joints[names.FOLLOWER_JOINT_STATE_TOPICS[0]][-1].position[0]

    def right_finger_now():
        return joints[names.FOLLOWER_JOINT_STATE_TOPICS[1]][-1].position[7]

    def command_and_spin(seconds, left_values=left, gripper=1.6214):
        for arm, values in enumerate((left_values, list(start[:6]))):
            groups[arm].publish(JointGroupCommand(name="arm", cmd=[float(v) for v in values]))
            singles[arm].publish(JointSingleCommand(name="gripper", cmd=float(gripper)))
        spin(seconds)

    # Radians to a gripper that reads metres (linear_position): no valid goal, the gripper stays.
    finger_before = right_finger_now()
    for _ in range(20):
        command_and_spin(0.02)
    assert right_finger_now() == pytest.approx(finger_before, abs=1e-3)
    assert "outside the finger's travel" in sim.log_path.read_text()
    # After ALOHA's set-up (current_based_position), the same radians open it.
    call(node, spin, wait_for, OperatingModes, "/follower_right/set_operating_modes", OperatingModes.Request(
        cmd_type="single", name="gripper", mode="current_based_position", profile_type="velocity"))
    wait_for(lambda: abs(left_waist() - 0.4) < 0.02 and right_finger_now() > 0.057, 30, lambda s: command_and_spin(0.01))
    assert abs(left_waist() - 0.4) < 0.02 and right_finger_now() > 0.057  # ALOHA 2's open finger: 0.0579 m

    # Joint states at 100 Hz of sim time: two per 20 ms control step.
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in joints[names.FOLLOWER_JOINT_STATE_TOPICS[0]]]
    assert 10_000_000 in set(np.diff(sorted(set(stamps))))

    # A malformed command (7 values for the 6-joint group) is refused and moves nothing.
    for _ in range(30):
        command_and_spin(0.02, left_values=[1.2] * 7)
    assert abs(left_waist() - 0.4) < 0.02

    # Reset with a new seed through ROS: arms back to the start pose, a new episode record.
    client = SimClient(node, spin)
    client.wait_until_ready()
    record = client.reset(7)
    assert record["seed"] == 7 and record["episode"] == 1 and record["step"] == 0
    assert wait_for(lambda: abs(left_waist()) < 0.01, 10, spin)
    assert not client.success


def test_every_sim_parameter_has_a_description(console, processes, probe, wait_for):
    node, spin = probe
    processes(
        "aloha_sim",
        console("oft_sim", "aloha_sim", "oft_sim.nodes.aloha_sim")
        + ["--ros-args", "-p", "image_height:=32", "-p", "image_width:=32", "-p", "cameras:=['cam_high']"],
    )
    listed = call(node, spin, wait_for, ListParameters, "/aloha_sim/list_parameters", ListParameters.Request())
    own = [n for n in listed.result.names if n not in ("use_sim_time", "start_type_description_service")]
    assert {"task", "seed", "realtime", "image_height", "step_timeout_s"} <= set(own)
    described = call(node, spin, wait_for, DescribeParameters, "/aloha_sim/describe_parameters", DescribeParameters.Request(names=own))
    missing = [d.name for d in described.descriptors if not d.description.strip()]
    assert not missing, f"parameters without a description: {missing}"
