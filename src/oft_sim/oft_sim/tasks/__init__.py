"""Simulated tasks, one module each, found by name.

A task is a scene, an object sampler, a success rule, its instructions and, where one
exists, a scripted demonstrator. Some tasks let the instruction choose among objects (its
`targets`, for example a colour); the simulator then scores the named one. A new task is a
module in this package with a `SimTask` subclass, added to `TASKS` below.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

MAX_REWARD = 4
"""Reward of a completed task; every task scores an episode 0..MAX_REWARD."""


class SimTask:
    """One task. Subclasses set the class attributes and the methods their task needs."""

    name: str = ""
    scene_file: str = ""  # a scene of gym-aloha's assets
    targets: Tuple[str, ...] = ("",)  # what an instruction may name; ("",): nothing to choose
    objects: Tuple[str, ...] = ()  # free-joint bodies the sampler places, in qpos order

    def build_physics(self):
        """The scene's MuJoCo physics."""
        from dm_control import mujoco
        from gym_aloha import constants

        return mujoco.Physics.from_xml_path(str(constants.ASSETS_DIR / self.scene_file))

    def object_qpos(self, seed: int) -> np.ndarray:
        """Free-joint qpos (7 per object, `objects` order) for this seed."""
        raise NotImplementedError

    def default_target(self, seed: int) -> str:
        """The object this seed's instruction names by default."""
        return self.targets[0]

    def instruction(self, target: str = "") -> str:
        raise NotImplementedError

    def reward(self, physics, target: str) -> int:
        """0..MAX_REWARD for the current state, MAX_REWARD once the task (for `target`) is done."""
        raise NotImplementedError

    def grasped(self, physics) -> Optional[str]:
        """The object the task's first grasp holds off the table now, if any (tasks with targets)."""
        return None

    def demonstrate(self, sim, steps: int) -> np.ndarray:
        """A scripted joint trajectory (steps x 14) solving the task from a just-reset `sim`."""
        raise NotImplementedError(f"no scripted demonstrator for {self.name}")

    @property
    def has_demonstrator(self) -> bool:
        return type(self).demonstrate is not SimTask.demonstrate

    def check_target(self, target: str) -> str:
        if target not in self.targets:
            named = ", ".join(repr(t) for t in self.targets)
            raise ValueError(f"task {self.name} names one of {named} in its instruction, not {target!r}")
        return target


def contact_pairs(physics) -> set:
    """Every (geom, geom) pair in contact, in both orders."""
    pairs = set()
    for contact in physics.data.contact[: physics.data.ncon]:
        first = physics.model.id2name(contact.geom1, "geom")
        second = physics.model.id2name(contact.geom2, "geom")
        pairs.update({(first, second), (second, first)})
    return pairs


def _registry() -> Dict[str, SimTask]:
    from oft_sim.tasks.handover_by_color import HandoverByColor
    from oft_sim.tasks.insertion import Insertion
    from oft_sim.tasks.transfer_cube import TransferCube

    return {task.name: task for task in (TransferCube(), Insertion(), HandoverByColor())}


TASKS: Dict[str, SimTask] = _registry()


def get_task(name: str) -> SimTask:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]
