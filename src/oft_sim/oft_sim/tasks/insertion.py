"""insertion (ACT's simulated benchmark): the left arm takes the socket, the right the peg, and the peg
goes into the socket until it touches the pin."""

from __future__ import annotations

import numpy as np

from oft_sim.tasks import SimTask, contact_pairs
from oft_sim.tasks.transfer_cube import LEFT_FINGER, RIGHT_FINGER

SOCKET_GEOMS = tuple(f"socket-{i}" for i in range(1, 5))


class Insertion(SimTask):
    name = "insertion"
    scene_file = "bimanual_viperx_insertion.xml"
    objects = ("red_peg", "socket")

    def object_qpos(self, seed: int) -> np.ndarray:
        from gym_aloha.utils import sample_insertion_pose

        return np.concatenate(sample_insertion_pose(int(seed)))

    def instruction(self, target: str = "") -> str:
        return "insert the peg into the socket"

    def reward(self, physics, target: str) -> int:
        """gym-aloha's insertion rule: 1 both grippers touch their objects, 2 both lifted, 3 the peg touches
        the socket in the air, 4 the peg touches the pin."""
        contacts = contact_pairs(physics)
        socket = lambda other: any((geom, other) in contacts for geom in SOCKET_GEOMS)  # noqa: E731
        both = ("red_peg", RIGHT_FINGER) in contacts and socket(LEFT_FINGER)
        in_air = ("red_peg", "table") not in contacts and not socket("table")
        if ("red_peg", "pin") in contacts:
            return 4
        if socket("red_peg") and in_air:
            return 3
        if both:
            return 2 if in_air else 1
        return 0

    def demonstrate(self, sim, steps: int) -> np.ndarray:
        from oft_sim.scripted_policy import scripted_insertion

        return scripted_insertion(sim, steps)
