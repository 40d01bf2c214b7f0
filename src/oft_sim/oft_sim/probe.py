"""Where a transfer-cube policy goes wrong, measured in-process (no ROS) against the scripted
demonstrator, which solves every seed:

- localization: at the reset every seed starts from the same pose, so where the first chunk
  aims can only come from the images. Compared: the right gripper's grasp point (forward
  kinematics) at the chunk's last action, policy against demonstrator; and the error of always
  aiming at the demonstrators' mean point, which is what a policy that does not look achieves.
- tracking: the demonstrator drives; from its observation `lead` steps before the grasp, the
  predicted grasp point at the grasp step against the demonstrator's.
- closed loop: the policy drives, K actions per chunk, with no inference delay and no nodes. A
  quick check, not the product's number: `evaluate` runs the real nodes in strict lockstep.

A policy is any `predict(images, proprio) -> [chunk, 14]` in robot units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np

from oft_sim.scripted_policy import EPISODE_STEPS, ArmIK, scripted_trajectory
from oft_sim.simulator import AlohaSim

Predict = Callable[[Dict[str, np.ndarray], np.ndarray], np.ndarray]

GRASP_STEP = 135
"""The demonstrator's right gripper is closing on the cube (it closes over steps 120..150)."""

RIGHT_ARM = slice(7, 13)


@dataclass
class SeedProbe:
    seed: int
    aim_policy: np.ndarray   # grasp point (m) of the first chunk's last action
    aim_demo: np.ndarray     # the demonstrator's at the same step
    tracking_error_cm: float
    success: bool
    max_reward: int

    @property
    def aim_error_cm(self) -> float:
        return float(np.linalg.norm(self.aim_policy - self.aim_demo) * 100)


class GraspPoint:
    """Right-arm forward kinematics: 14-joint action -> grasp point between the fingers (m)."""

    def __init__(self, sim: AlohaSim):
        self._ik = ArmIK(sim.physics.model.ptr, "right")
        self._qpos = np.array(sim.physics.data.qpos)
        self._ik.calibrate(self._qpos)

    def __call__(self, action: np.ndarray) -> np.ndarray:
        qpos = self._qpos.copy()
        qpos[self._ik.qpos_index] = np.asarray(action)[RIGHT_ARM]
        return self._ik.pose(qpos)[0]


def probe_seed(predict: Predict, seed: int, sim: AlohaSim, lead: int = 25, execute: int = 25,
               steps: int = EPISODE_STEPS) -> SeedProbe:
    """All three measurements for one seed, on `sim` (reset here as often as needed)."""
    sim.reset(seed)
    demo = scripted_trajectory(sim, steps)
    grasp_point = GraspPoint(sim)
    first = predict(sim.render(), sim.joint_positions())
    last = min(len(first), steps) - 1
    for action in demo[:GRASP_STEP - lead]:
        sim.step(action)
    chunk = predict(sim.render(), sim.joint_positions())
    if lead >= len(chunk):
        raise ValueError(f"lead {lead} must be shorter than the policy's chunk ({len(chunk)} actions)")
    tracking = np.linalg.norm(grasp_point(chunk[lead]) - grasp_point(demo[GRASP_STEP])) * 100

    success, max_reward = closed_loop(predict, seed, sim, execute, steps)
    return SeedProbe(seed, grasp_point(first[last]), grasp_point(demo[last]), float(tracking), success, max_reward)


def closed_loop(predict: Predict, seed: int, sim: AlohaSim, execute: int = 25, steps: int = EPISODE_STEPS):
    """(success, max reward) of the policy driving alone from the reset, `execute` actions per chunk."""
    sim.reset(seed)
    queue: List[np.ndarray] = []
    for _ in range(steps):
        if not queue:
            queue = list(predict(sim.render(), sim.joint_positions())[:execute])
        sim.step(queue.pop(0))
    return sim.success, sim.max_reward


def summarize(probes: Sequence[SeedProbe]) -> dict:
    policy = np.array([p.aim_policy for p in probes])
    demo = np.array([p.aim_demo for p in probes])
    error = np.array([p.aim_error_cm for p in probes])
    blind = np.linalg.norm(demo - demo.mean(axis=0), axis=1) * 100

    def correlation(axis: int):
        if len(probes) < 3 or np.std(policy[:, axis]) < 1e-9 or np.std(demo[:, axis]) < 1e-9:
            return None
        return round(float(np.corrcoef(policy[:, axis], demo[:, axis])[0, 1]), 3)

    return {
        "seeds": [p.seed for p in probes],
        "localization": {
            "aim_error_cm_mean": round(float(error.mean()), 2),
            "blind_aim_error_cm_mean": round(float(blind.mean()), 2),
            "correlation_x": correlation(0),
            "correlation_y": correlation(1),
        },
        "tracking_error_cm": {
            "mean": round(float(np.mean([p.tracking_error_cm for p in probes])), 2),
            "max": round(float(np.max([p.tracking_error_cm for p in probes])), 2),
        },
        "closed_loop": {
            "successes": int(sum(p.success for p in probes)),
            "episodes": len(probes),
            "max_reward_counts": {str(r): sum(p.max_reward == r for p in probes)
                                  for r in sorted({p.max_reward for p in probes})},
        },
    }
