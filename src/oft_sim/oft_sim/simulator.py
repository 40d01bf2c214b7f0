"""Plain-Python simulated bimanual ALOHA over gym-aloha's MuJoCo scenes (no ROS).

Each task (`oft_sim.tasks`) gives the scene, the object sampler and the success rule;
the scenes are `gym-aloha`'s, and physics runs through dm_control's MuJoCo bindings.
We drive the physics ourselves instead of through `gym_aloha.AlohaEnv`
because its gym wrapper renders three 480x640 cameras with shadows and 4x
MSAA on every step (about 131 ms) whether or not anyone looks, and declares
a wrong action space. Here a step is physics only (about 0.3 ms) and images
are rendered on request, at the caller's resolution, without shadows or MSAA.

Units: the policy's convention (`oft_policy.calibration`), `names.ALOHA_JOINT_NAMES`
order: arm joints in radians; each gripper as its opening, 0 = closed .. 1 = open, the
scene's finger slide position (x - 0.01844) / (0.058 - 0.01844). The simulator node
turns these into the real driver's units with a calibration (`oft_sim.xs_driver`).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering unless the caller chose otherwise

from gym_aloha import constants as aloha_constants  # noqa: E402

from oft_policy.names import ALOHA_JOINT_NAMES, CAMERA_NAMES  # noqa: E402
from oft_sim.tasks import MAX_REWARD, TASKS, get_task  # noqa: E402,F401  (TASKS: the task names)

CONTROL_PERIOD_S = aloha_constants.DT
"""One control step of the ALOHA tasks: 20 ms (50 Hz)."""

ACTION_DIM = len(ALOHA_JOINT_NAMES)

# The suite's camera names mapped onto the scene's MuJoCo cameras.
SCENE_CAMERAS = {
    "cam_high": "top",
    "cam_left_wrist": "left_wrist",
    "cam_right_wrist": "right_wrist",
}

_GRIPPER_CLOSED = aloha_constants.PUPPET_GRIPPER_POSITION_CLOSE
_GRIPPER_OPEN = aloha_constants.PUPPET_GRIPPER_POSITION_OPEN
_ARM_QPOS = (slice(0, 6), slice(8, 14))  # arm joints of each arm in qpos / ctrl
_FINGER_QPOS = (6, 14)  # left finger slide of each arm; the right finger mirrors it


def gripper_to_normalized(finger_position):
    """Finger slide position (m) -> normalized gripper opening (0 closed, 1 open)."""
    return (np.asarray(finger_position) - _GRIPPER_CLOSED) / (_GRIPPER_OPEN - _GRIPPER_CLOSED)


def normalized_to_gripper(opening):
    """Normalized gripper opening (0 closed, 1 open) -> finger slide position (m)."""
    return np.asarray(opening) * (_GRIPPER_OPEN - _GRIPPER_CLOSED) + _GRIPPER_CLOSED


def action_to_ctrl(action: np.ndarray) -> np.ndarray:
    """14-dim ALOHA action -> the scene's 16 position actuators (arm joints, finger pair per arm)."""
    ctrl = np.empty(16)
    for arm, offset in enumerate((0, 8)):
        ctrl[offset : offset + 6] = action[7 * arm : 7 * arm + 6]
        finger = normalized_to_gripper(action[7 * arm + 6])
        ctrl[offset + 6] = finger
        ctrl[offset + 7] = -finger
    return ctrl


def validate_action(action) -> np.ndarray:
    """The action as a float array, or ValueError naming what is wrong with it."""
    values = np.asarray(action, dtype=np.float64)
    if values.shape != (ACTION_DIM,):
        raise ValueError(f"action must have {ACTION_DIM} values ({', '.join(ALOHA_JOINT_NAMES)}), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"action has non-finite values: {values.tolist()}")
    return values


class AlohaSim:
    """One simulated ALOHA workcell: reset by seed, step by joint-position action, render, score.

    `cameras` are suite camera names (keys of SCENE_CAMERAS); `image_size` is
    (height, width) of every rendered image.
    """

    def __init__(
        self,
        task: str = "transfer_cube",
        cameras: Sequence[str] = CAMERA_NAMES,
        image_size: Tuple[int, int] = (480, 640),
    ):
        spec = get_task(task)
        unknown = [c for c in cameras if c not in SCENE_CAMERAS]
        if unknown:
            raise ValueError(f"unknown cameras {unknown}; the scene has {sorted(SCENE_CAMERAS)}")
        height, width = (int(v) for v in image_size)
        if height <= 0 or width <= 0:
            raise ValueError(f"image_size must be positive (height, width), got {image_size}")
        self.task = task
        self.cameras = tuple(cameras)
        self.image_size = (height, width)
        self.spec = spec
        self.physics = spec.build_physics()
        # Fast offscreen rendering: no multisampling (must be set before the first render) and,
        # at render time, no shadows. Together about 5x faster than the scene as shipped.
        self.physics.model.vis.quality.offsamples = 0
        self._substeps = int(round(CONTROL_PERIOD_S / self.physics.timestep()))
        self.seed: Optional[int] = None
        self.target = ""  # what this episode's instruction names (tasks with targets), as the task scores it
        self.grasped: Optional[str] = None  # the first object the task's grasp lifted this episode
        self.steps = 0
        self.reward = 0
        self.max_reward = 0
        self.last_action = np.zeros(ACTION_DIM)

    # --- episode ---------------------------------------------------------------------------------

    def reset(self, seed: int, target: Optional[str] = None) -> None:
        """Start pose for both arms, objects placed by the task's sampler for this seed; `target` is
        what the instruction names (None: the seed's default)."""
        target = self.spec.default_target(int(seed)) if target is None else self.spec.check_target(target)
        start = np.asarray(aloha_constants.START_ARM_POSE, dtype=np.float64)
        self.physics.reset()
        with self.physics.reset_context():
            self.physics.data.qpos[:16] = start
            self.physics.data.ctrl[:] = start
            object_qpos = self.spec.object_qpos(int(seed))
            self.physics.data.qpos[16 : 16 + len(object_qpos)] = object_qpos
        self.seed = int(seed)
        self.target = target
        self.grasped = None
        self.steps = 0
        self.reward = self._compute_reward()
        self.max_reward = self.reward
        self.last_action = self.joint_positions()

    def step(self, action, at_midpoint: Optional[Callable[[], None]] = None) -> int:
        """Hold `action` (14 joint targets) for one control period; returns the reward after it.

        `at_midpoint` runs halfway through the period (a driver publishing joint states at twice
        the control rate). A malformed action raises ValueError and changes nothing.
        """
        values = validate_action(action)
        self.physics.data.ctrl[:] = action_to_ctrl(values)
        if at_midpoint is None:
            self.physics.step(self._substeps)
        else:
            half = self._substeps // 2
            self.physics.step(half)
            at_midpoint()
            self.physics.step(self._substeps - half)
        self.last_action = values
        self.steps += 1
        self.reward = self._compute_reward()
        self.max_reward = max(self.max_reward, self.reward)
        if self.grasped is None:
            self.grasped = self.spec.grasped(self.physics)
        return self.reward

    @property
    def time(self) -> float:
        """Simulated seconds since reset (control steps x 20 ms)."""
        return self.steps * CONTROL_PERIOD_S

    @property
    def success(self) -> bool:
        """The task was completed (reward 4) at some step of this episode."""
        return self.max_reward >= MAX_REWARD

    # --- observation -----------------------------------------------------------------------------

    def joint_positions(self) -> np.ndarray:
        """14 measured joint positions in ALOHA order (grippers normalized 0 closed .. 1 open)."""
        qpos = self.physics.data.qpos
        return self._arm_vector(qpos, gripper_to_normalized)

    def joint_velocities(self) -> np.ndarray:
        """14 joint velocities (rad/s; grippers in normalized units per second)."""
        qvel = self.physics.data.qvel
        return self._arm_vector(qvel, lambda v: np.asarray(v) / (_GRIPPER_OPEN - _GRIPPER_CLOSED))

    def render(self, cameras: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """uint8 RGB images (height, width, 3) per suite camera name."""
        height, width = self.image_size
        images = {}
        for camera in cameras or self.cameras:
            images[camera] = self.physics.render(
                height=height,
                width=width,
                camera_id=SCENE_CAMERAS[camera],
                render_flag_overrides={"shadow": False},
            )
        return images

    # --- internals -------------------------------------------------------------------------------

    def _arm_vector(self, source, gripper_map) -> np.ndarray:
        out = np.empty(ACTION_DIM)
        for arm in range(2):
            out[7 * arm : 7 * arm + 6] = source[_ARM_QPOS[arm]]
            out[7 * arm + 6] = gripper_map(source[_FINGER_QPOS[arm]])
        return out

    def _compute_reward(self) -> int:
        return int(self.spec.reward(self.physics, self.target))
