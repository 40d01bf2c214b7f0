"""handover_by_color: a red and a blue cube; the instruction names the one the right arm hands to the left.

The scene is gym-aloha's transfer-cube scene with a second, blue cube added when it loads. Both
cubes are placed by the seed in transfer-cube's region, never closer than MIN_GAP_M; the seed
also chooses which colour its instruction names by default. Success is the named cube held by
the left gripper off the table.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from oft_sim.tasks import SimTask, contact_pairs
from oft_sim.tasks.transfer_cube import RIGHT_FINGER, handover_reward

COLORS = {"red": "1 0 0 1", "blue": "0 0 1 1"}
MIN_GAP_M = 0.07  # between cube centres: 3 cm of table between 4 cm cubes
REGION = ((0.0, 0.2), (0.4, 0.6))  # x, y of transfer-cube's sampler (m)


def cube_geom(color: str) -> str:
    return f"{color}_box"


class HandoverByColor(SimTask):
    name = "handover_by_color"
    scene_file = "bimanual_viperx_transfer_cube.xml"
    targets = tuple(COLORS)
    objects = tuple(cube_geom(color) for color in COLORS)

    def build_physics(self):
        from dm_control import mujoco
        from gym_aloha import constants

        assets = {path.name: path.read_bytes() for path in constants.ASSETS_DIR.iterdir() if path.is_file()}
        scene = assets[self.scene_file].decode()
        red = re.search(r"<body name=\"box\".*?</body>", scene, re.S)
        if red is None:
            raise RuntimeError(f"{self.scene_file} has no cube body to copy")
        blue = (red.group(0).replace('name="box"', 'name="blue_body"').replace("red_box", "blue_box")
                .replace(COLORS["red"], COLORS["blue"]))
        scene = scene.replace(red.group(0), red.group(0) + "\n" + blue)
        scene = re.sub(r"<keyframe>.*?</keyframe>", "", scene, flags=re.S)  # its qpos has one cube
        return mujoco.Physics.from_xml_string(scene, assets=assets)

    def object_qpos(self, seed: int) -> np.ndarray:
        rng = np.random.RandomState(int(seed))
        low, high = np.array(REGION).T
        red = rng.uniform(low, high)
        blue = rng.uniform(low, high)
        while np.linalg.norm(blue - red) < MIN_GAP_M:
            blue = rng.uniform(low, high)
        pose = lambda xy: np.concatenate([xy, [0.05], [1, 0, 0, 0]])  # noqa: E731  (z as transfer-cube's sampler)
        return np.concatenate([pose(red), pose(blue)])

    def default_target(self, seed: int) -> str:
        return self.targets[int(np.random.RandomState(int(seed) + 7919).randint(len(self.targets)))]

    def instruction(self, target: str = "") -> str:
        return f"pick up the {self.check_target(target)} cube with the right arm and hand it over to the left arm"

    def reward(self, physics, target: str) -> int:
        return handover_reward(contact_pairs(physics), cube_geom(self.check_target(target)))

    def grasped(self, physics) -> Optional[str]:
        contacts = contact_pairs(physics)
        for color in self.targets:
            cube = cube_geom(color)
            if (cube, RIGHT_FINGER) in contacts and (cube, "table") not in contacts:
                return color
        return None

    def demonstrate(self, sim, steps: int) -> np.ndarray:
        from oft_sim.scripted_policy import scripted_transfer

        return scripted_transfer(sim, cube_geom(sim.target), steps)
