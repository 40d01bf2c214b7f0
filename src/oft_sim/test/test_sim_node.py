"""The aloha_sim node as a real process over loopback DDS: sensors, clock, commands, reset."""


import numpy as np
import pytest
from rcl_interfaces.srv import DescribeParameters, ListParameters
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

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


def test_sim_node_publishes_and_follows_commands(console, processes, probe, wait_for):
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
    commands = [node.create_publisher(Float64MultiArray, t, STATUS_QOS) for t in names.FORWARD_POSITION_COMMAND_TOPICS]

    assert wait_for(lambda: all(len(v) > 3 for v in joints.values()) and all(images.values()) and len(clock) > 3, 60, spin), (
        f"no sensors from the simulator; its log:\n{sim.log_path.read_text()}"
    )
    state = joints[names.FOLLOWER_JOINT_STATE_TOPICS[0]][-1]
    assert list(state.name) == list(names.ARM_JOINTS)
    assert state.position[1] == pytest.approx(-0.96, abs=0.02)  # gym-aloha's start pose
    image = images[names.CAMERA_TOPICS[0]][-1]
    assert (image.height, image.width, image.encoding, image.step) == (48, 64, "rgb8", 192)
    assert len(image.data) == 48 * 64 * 3
    ticks = np.diff(clock)
    assert np.all(ticks > 0) and np.all(ticks % 20_000_000 == 0)  # sim time moves in 20 ms steps
    image_ns = image.header.stamp.sec * 10**9 + image.header.stamp.nanosec
    assert image_ns >= clock[0] and (image_ns - clock[0]) % 20_000_000 == 0  # stamped on the sim-time grid

    # Command the left waist to 0.4 rad and open the right gripper; the right arm stays.
    start = np.array(joints[names.FOLLOWER_JOINT_STATE_TOPICS[1]][-1].position)
    left = [0.4, -0.96, 1.16, 0.0, -0.3, 0.0, 0.1]
    right = list(start[:6]) + [1.0]

    def left_waist():
        return joints[names.FOLLOWER_JOINT_STATE_TOPICS[0]][-1].position[0]

    def command_and_spin(seconds, left_values=left):
        commands[0].publish(Float64MultiArray(data=left_values))
        commands[1].publish(Float64MultiArray(data=right))
        spin(seconds)

    def right_now():
        return joints[names.FOLLOWER_JOINT_STATE_TOPICS[1]][-1].position

    wait_for(lambda: abs(left_waist() - 0.4) < 0.02 and right_now()[6] > 0.9, 30, lambda s: command_and_spin(0.01))
    assert abs(left_waist() - 0.4) < 0.02
    assert right_now()[6] > 0.9 and abs(right_now()[0] - start[0]) < 0.02

    # A malformed command (6 values for a 7-joint arm) is refused and moves nothing.
    for _ in range(30):
        command_and_spin(0.02, left_values=[1.2] * 6)
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
