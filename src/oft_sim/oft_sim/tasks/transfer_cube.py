"""transfer_cube (ACT's simulated benchmark): the right arm picks the red cube up and hands it to the left."""

from __future__ import annotations

import numpy as np

from oft_sim.tasks import SimTask, contact_pairs

LEFT_FINGER = "vx300s_left/10_left_gripper_finger"
RIGHT_FINGER = "vx300s_right/10_right_gripper_finger"


def handover_reward(contacts: set, cube: str) -> int:
    """gym-aloha's transfer rule for one cube: 1 touched by the right gripper, 2 lifted by it, 3 touched by
    the left gripper, 4 held by the left gripper off the table."""
    right, left = (cube, RIGHT_FINGER) in contacts, (cube, LEFT_FINGER) in contacts
    on_table = (cube, "table") in contacts
    if left:
        return 3 if on_table else 4
    if right:
        return 1 if on_table else 2
    return 0


class TransferCube(SimTask):
    name = "transfer_cube"
    scene_file = "bimanual_viperx_transfer_cube.xml"
    objects = ("red_box",)

    def object_qpos(self, seed: int) -> np.ndarray:
        from gym_aloha.utils import sample_box_pose

        return sample_box_pose(int(seed))

    def instruction(self, target: str = "") -> str:
        return "pick up the cube with the right arm and hand it over to the left arm"

    def reward(self, physics, target: str) -> int:
        return handover_reward(contact_pairs(physics), "red_box")

    def demonstrate(self, sim, steps: int) -> np.ndarray:
        from oft_sim.scripted_policy import scripted_transfer

        return scripted_transfer(sim, "red_box", steps)
