"""Independent gripper check: raw bag values -> documented convention, by hand, vs what LeRobot loaded.

Runs in the suite's env (rosbags). Uses only the published ALOHA 2 constants (aloha/constants.py):
follower finger 0.0440 m closed .. 0.0579 m open (observation), leader gripper joint -0.0552 rad closed
.. 0.8298 rad open (action); normalized = (raw - closed) / (open - closed), 0 closed .. 1 open.
Prints JSON lines {t, obs_left, obs_right, act_left, act_right} for the first message of each 0.2 s.
"""
import json
import sys
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

FINGER = (0.0440, 0.0579)
LEADER_JOINT = (-0.0552, 0.8298)
norm = lambda v, span: (v - span[0]) / (span[1] - span[0])  # noqa: E731

bag = Path(sys.argv[1])
topics = {"/follower_left/joint_states": ("obs_left", "left_finger", FINGER),
          "/follower_right/joint_states": ("obs_right", "left_finger", FINGER),
          "/leader_left/joint_states": ("act_left", "gripper", LEADER_JOINT),
          "/leader_right/joint_states": ("act_right", "gripper", LEADER_JOINT)}
rows = {}
with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
    conns = [c for c in reader.connections if c.topic in topics]
    t0 = None
    for conn, t_ns, raw in reader.messages(connections=conns):
        t0 = t_ns if t0 is None else t0
        slot = round((t_ns - t0) / 1e9, 2)
        if abs(slot * 5 - round(slot * 5)) > 1e-9:
            continue
        msg = reader.deserialize(raw, conn.msgtype)
        key, joint, span = topics[conn.topic]
        value = float(msg.position[list(msg.name).index(joint)])
        rows.setdefault(slot, {"t": slot})[key] = round(norm(value, span), 4)
        rows[slot][key + "_raw"] = round(value, 5)
for slot in sorted(rows):
    print(json.dumps(rows[slot]))
