"""Scripted demonstrations: end-effector waypoints solved to joint targets by our own IK.

For each seed the planner reads the object pose the simulator placed, builds a
gripper path of timed waypoints (pose of each gripper plus its opening),
interpolates it at the control rate and solves every pose to the arm's six
joints with damped least squares on the scene's own kinematics (warm-started
from the previous step, so the joint path is smooth). The result is a plain
joint-position trajectory in ALOHA order, executed through the same command
interface a learned policy uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import mujoco as mj
import numpy as np

from oft_sim.simulator import ACTION_DIM, AlohaSim

EPISODE_STEPS = 400
"""Steps of a scripted transfer-cube episode (8 s at 50 Hz)."""

JOINT_COST_INV = 1.0 / np.array([1.0, 1.0, 1.0, 20.0, 1.0, 2.0])  # forearm_roll 20x, wrist_rotate 2x

GRIPPER_OPEN = 1.0
GRIPPER_CLOSED = 0.0


@dataclass(frozen=True)
class Waypoint:
    """Where one gripper should be at `step`. The gripper always points along the heading
    from its arm's base to `position` (the vx300s has no wrist yaw, so any other heading
    would need the arm to contort); `pitch` tilts it down (rad), `roll` turns it about
    its own pointing axis (rad)."""

    step: int
    position: Tuple[float, float, float]  # grasp point between the fingers, world frame (m)
    pitch: float
    roll: float
    gripper: float  # normalized opening


def gripper_quat(base_xy, position, pitch: float, roll: float) -> np.ndarray:
    """gripper_link orientation (w, x, y, z): heading from the base, then pitch, then roll."""
    heading = np.arctan2(position[1] - base_xy[1], position[0] - base_xy[0])
    turned = _mul(_quat([0, 0, 1], heading), _quat([0, 1, 0], pitch))
    return _mul(turned, _quat([1, 0, 0], roll))


def square_to_world_roll(base_xy, position, pitch: float) -> float:
    """Roll that turns the fingers' closing axis perpendicular to world x, so they close on
    the faces of an axis-aligned cube whatever the arm's heading (the vx300s cannot yaw
    its wrist; with the gripper pitched down, rolling it does that job)."""
    heading = np.arctan2(position[1] - base_xy[1], position[0] - base_xy[0])
    return float(np.arctan(np.tan(heading) / np.sin(pitch)))


def _quat(axis, angle) -> np.ndarray:
    q = np.zeros(4)
    mj.mju_axisAngle2Quat(q, np.asarray(axis, dtype=np.float64), float(angle))
    return q


def _mul(a, b) -> np.ndarray:
    q = np.zeros(4)
    mj.mju_mulQuat(q, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return q


def interpolate(waypoints: Sequence[Waypoint], step: int):
    """(position, pitch, roll, gripper) at `step`, eased in and out between waypoints."""
    if step <= waypoints[0].step:
        w = waypoints[0]
        return np.array(w.position), w.pitch, w.roll, w.gripper
    for w0, w1 in zip(waypoints, waypoints[1:]):
        if w0.step <= step <= w1.step:
            s = (step - w0.step) / max(w1.step - w0.step, 1)
            s = 0.5 - 0.5 * np.cos(np.pi * s)  # no velocity jumps at waypoints

            def mix(a, b):
                return (1 - s) * np.asarray(a) + s * np.asarray(b)

            return mix(w0.position, w1.position), mix(w0.pitch, w1.pitch), mix(w0.roll, w1.roll), mix(w0.gripper, w1.gripper)
    w = waypoints[-1]
    return np.array(w.position), w.pitch, w.roll, w.gripper


class ArmIK:
    """Damped-least-squares IK for one arm's 6 joints on the scene model (kinematics only)."""

    def __init__(self, model, side: str):
        self.model = model
        self.data = mj.MjData(model)
        prefix = f"vx300s_{side}"
        self.body = mj.mj_name2id(model, mj.mjtObj.mjOBJ_BODY, f"{prefix}/gripper_link")
        joints = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
        ids = [mj.mj_name2id(model, mj.mjtObj.mjOBJ_JOINT, f"{prefix}/{j}") for j in joints]
        self.qpos_index = np.array([model.jnt_qposadr[i] for i in ids])
        self.dof_index = np.array([model.jnt_dofadr[i] for i in ids])
        self.limits = np.array([model.jnt_range[i] for i in ids])
        finger_geoms = [f"{prefix}/10_left_gripper_finger", f"{prefix}/10_right_gripper_finger"]
        self._finger_geoms = [mj.mj_name2id(model, mj.mjtObj.mjOBJ_GEOM, g) for g in finger_geoms]
        self._base = mj.mj_name2id(model, mj.mjtObj.mjOBJ_BODY, prefix)
        self.grasp_offset = np.zeros(3)  # set by calibrate()
        self.base_xy = np.zeros(2)

    def calibrate(self, qpos: np.ndarray) -> None:
        """Grasp point = midpoint of the two finger geoms, in the gripper_link frame."""
        self._forward(qpos)
        mid = np.mean([self.data.geom_xpos[g] for g in self._finger_geoms], axis=0)
        rotation = self.data.xmat[self.body].reshape(3, 3)
        self.grasp_offset = rotation.T @ (mid - self.data.xpos[self.body])
        self.base_xy = self.data.xpos[self._base][:2].copy()

    def pose(self, qpos: np.ndarray):
        """(grasp point, gripper_link quat) at these joint values."""
        self._forward(qpos)
        return self._grasp_point(), self.data.xquat[self.body].copy()

    def start_waypoint(self, qpos: np.ndarray, gripper: float) -> Waypoint:
        """Waypoint at step 0: the gripper where these joint values put it."""
        self._forward(qpos)
        pointing = self.data.xmat[self.body].reshape(3, 3)[:, 0]
        return Waypoint(0, tuple(self._grasp_point()), float(np.arcsin(-pointing[2])), 0.0, gripper)

    def quat(self, position, pitch: float, roll: float) -> np.ndarray:
        return gripper_quat(self.base_xy, position, pitch, roll)

    def solve(self, arm_q: np.ndarray, position, quat, iterations: int = 30) -> np.ndarray:
        q = np.array(arm_q, dtype=np.float64)
        jacp = np.zeros((3, self.model.nv))
        jacr = np.zeros((3, self.model.nv))
        for _ in range(iterations):
            self._set(q)
            point = self._grasp_point()
            error_pos = np.asarray(position) - point
            error_rot = np.zeros(3)
            mj.mju_subQuat(error_rot, np.asarray(quat, dtype=np.float64), self.data.xquat[self.body])
            error_rot = self.data.xmat[self.body].reshape(3, 3) @ error_rot  # to world frame
            error = np.concatenate([error_pos, 0.5 * error_rot])
            if np.linalg.norm(error) < 1e-5:
                break
            mj.mj_jac(self.model, self.data, jacp, jacr, point, self.body)
            jac = np.vstack([jacp[:, self.dof_index], 0.5 * jacr[:, self.dof_index]])
            # Weighted damped least squares: the two roll joints cost more. Near wrist_angle = 0
            # their axes line up, and unweighted steps pitch the gripper by rolling both toward
            # +-pi (same pose, contorted arm, joint-limit flips) instead of bending the wrist.
            weighted = jac * JOINT_COST_INV
            dq = weighted.T @ np.linalg.solve(weighted @ jac.T + 1e-4 * np.eye(6), error)
            q = np.clip(q + dq, self.limits[:, 0], self.limits[:, 1])
        return q

    def _forward(self, qpos):
        self.data.qpos[:] = qpos
        mj.mj_kinematics(self.model, self.data)

    def _set(self, arm_q):
        self.data.qpos[self.qpos_index] = arm_q
        mj.mj_kinematics(self.model, self.data)
        mj.mj_comPos(self.model, self.data)  # the Jacobian needs the com-based dof axes

    def _grasp_point(self):
        rotation = self.data.xmat[self.body].reshape(3, 3)
        return self.data.xpos[self.body] + rotation @ self.grasp_offset


GRASP_PITCH = np.pi / 3
"""How far the right gripper points down from horizontal while it picks and carries the cube."""

HANDOVER_STEP = 215
"""Step at which the right gripper holds the cube still at the meeting point."""

MEET = np.array([0.0, 0.5, 0.25])
"""Where the right gripper brings the cube for the handover (world frame, m)."""

GRASP_ABOVE_CENTER = 0.01
"""Grasp point height above the cube's centre (m): low enough to hold it, high enough that
the finger tips clear the table."""


def pick_waypoints(steps, grasp, pitch: float, roll: float, lift: float) -> List[Waypoint]:
    """Open above `grasp`, down to it, close, lift by `lift` (m): one waypoint at each of the four `steps`."""
    grasp = np.asarray(grasp, dtype=np.float64)
    above, down, close, lifted = steps
    return [
        Waypoint(above, tuple(grasp + [0, 0, 0.08]), pitch, roll, GRIPPER_OPEN),
        Waypoint(down, tuple(grasp), pitch, roll, GRIPPER_OPEN),
        Waypoint(close, tuple(grasp), pitch, roll, GRIPPER_CLOSED),
        Waypoint(lifted, tuple(grasp + [0, 0, lift]), pitch, roll, GRIPPER_CLOSED),
    ]


def transfer_cube_waypoints(
    cube: np.ndarray,
    left_start: Waypoint,
    right_start: Waypoint,
    right_base_xy,
    handover_cube: Optional[np.ndarray] = None,
) -> Tuple[List[Waypoint], List[Waypoint]]:
    """Right gripper picks the cube from above and lifts it to the meeting point; the left
    gripper, turned so its fingers close vertically, takes it from the -x side; right lets go.

    `handover_cube` is where the cube actually is at HANDOVER_STEP (the arms sag under
    gravity, so the planner measures it in a first pass); None aims at the nominal point."""
    cube = np.asarray(cube, dtype=np.float64)
    take = MEET if handover_cube is None else np.asarray(handover_cube, dtype=np.float64)
    pick, up = GRASP_PITCH, 0.0
    square = square_to_world_roll(right_base_xy, cube, pick)
    grasp = cube + [0, 0, GRASP_ABOVE_CENTER]
    away = MEET + [0.12, 0, 0.04]
    right = [
        right_start,
        *pick_waypoints((80, 120, 150, 165), grasp, pick, square, 0.02),
        Waypoint(HANDOVER_STEP, tuple(MEET), pick, 0.0, GRIPPER_CLOSED),
        Waypoint(300, tuple(MEET), pick, 0.0, GRIPPER_CLOSED),
        Waypoint(330, tuple(MEET), pick, 0.0, GRIPPER_OPEN),
        Waypoint(370, tuple(away), pick, 0.0, GRIPPER_OPEN),
        Waypoint(EPISODE_STEPS, tuple(away), pick, 0.0, GRIPPER_OPEN),
    ]
    grip = take + [-0.012, 0, 0]
    vertical = np.pi / 2  # fingers close along z
    left = [
        left_start,
        Waypoint(190, tuple(grip + [-0.12, 0, 0]), up, vertical, GRIPPER_OPEN),
        Waypoint(250, tuple(grip), up, vertical, GRIPPER_OPEN),
        Waypoint(280, tuple(grip), up, vertical, GRIPPER_CLOSED),
        Waypoint(330, tuple(grip), up, vertical, GRIPPER_CLOSED),
        Waypoint(375, tuple(grip + [-0.1, 0, 0]), up, vertical, GRIPPER_CLOSED),
        Waypoint(EPISODE_STEPS, tuple(grip + [-0.1, 0, 0]), up, vertical, GRIPPER_CLOSED),
    ]
    return left, right


def _solve(arms, qpos, waypoints, steps: int) -> np.ndarray:
    actions = np.empty((steps, ACTION_DIM))
    arm_q = [qpos[arm.qpos_index].copy() for arm in arms]
    for step in range(steps):
        for side, (arm, path) in enumerate(zip(arms, waypoints)):
            position, pitch, roll, gripper = interpolate(path, step + 1)
            arm_q[side] = arm.solve(arm_q[side], position, arm.quat(position, pitch, roll))
            actions[step, 7 * side : 7 * side + 6] = arm_q[side]
            actions[step, 7 * side + 6] = gripper
    return actions


def scripted_trajectory(sim: AlohaSim, steps: int = EPISODE_STEPS) -> np.ndarray:
    """The scripted demonstrator of the simulator's task for its current episode (steps x 14)."""
    if sim.seed is None:
        raise ValueError("reset the simulator before planning")
    if not sim.spec.has_demonstrator:
        raise ValueError(f"no scripted demonstrator for {sim.task!r}")
    return sim.spec.demonstrate(sim, steps)


def _arms_at_start(sim: AlohaSim):
    """(qpos, both arms' calibrated IK, their step-0 waypoints) of a just-reset simulator."""
    qpos = np.array(sim.physics.data.qpos)
    arms = (ArmIK(sim.physics.model.ptr, "left"), ArmIK(sim.physics.model.ptr, "right"))
    for arm in arms:
        arm.calibrate(qpos)
    starts = [arm.start_waypoint(qpos, g) for arm, g in zip(arms, sim.joint_positions()[[6, 13]])]
    return qpos, arms, starts


def scripted_transfer(sim: AlohaSim, cube: str, steps: int = EPISODE_STEPS) -> np.ndarray:
    """Joint-position trajectory (steps x 14) that hands the cube whose geom is `cube` (its body's free
    joint placed by the seed) from the right arm to the left in a just-reset simulator.

    Two passes: plan toward the nominal meeting point, execute it on a scratch copy of the
    scene to see where the cube really is at the handover, then re-plan the left arm's grasp
    there. Physics is deterministic, so the executed result is the same wherever it runs.
    """
    qpos, arms, starts = _arms_at_start(sim)
    body = sim.physics.model.geom_bodyid[sim.physics.model.name2id(cube, "geom")]

    def cube_position(physics):
        return np.array(physics.data.xpos[body])

    where = cube_position(sim.physics)
    where[2] = sim.physics.named.model.geom_size[cube][2]  # resting on the table (z = 0)
    right_base = arms[1].base_xy
    nominal = _solve(arms, qpos, transfer_cube_waypoints(where, *starts, right_base), steps)
    scratch = AlohaSim(sim.task, cameras=())
    scratch.reset(sim.seed, sim.target)
    for action in nominal[:HANDOVER_STEP]:
        scratch.step(action)
    handover_cube = cube_position(scratch.physics)
    return _solve(arms, qpos, transfer_cube_waypoints(where, *starts, right_base, handover_cube), steps)


INSERT_PICK_STEPS = (70, 110, 140, 160)  # both arms pick at once

INSERT_MEET = np.array([0.0, 0.5, 0.2])
"""Where the socket's opening and the peg's tip meet (world frame, m)."""


def insertion_waypoints(peg, socket, left_start: Waypoint, right_start: Waypoint, left_base_xy, right_base_xy,
                        socket_at_meet=None, peg_offset=None) -> Tuple[List[Waypoint], List[Waypoint]]:
    """Left gripper lifts the socket by its side walls, right gripper the peg by its middle; both
    carry them level to the meeting point, peg 4 cm outside the socket's opening, then the right
    pushes the peg along -x until its tip is 3 cm inside (the pin starts 2 cm in).

    `socket_at_meet` is where the socket really is once held at the meeting point and `peg_offset`
    the peg centre's offset from the right grasp point there (a first pass measures both); None
    aims with the nominal grasp."""
    pick = GRASP_PITCH
    socket_grasp = np.asarray(socket, dtype=np.float64) + [0, 0, GRASP_ABOVE_CENTER]
    peg_grasp = np.asarray(peg, dtype=np.float64) + [0, 0, 0.004]
    left_roll = square_to_world_roll(left_base_xy, socket_grasp, pick)
    right_roll = square_to_world_roll(right_base_xy, peg_grasp, pick)
    socket_hold = INSERT_MEET + [-0.06, 0, 0]  # the socket's centre: its +x opening at the meeting point
    socket_now = socket_hold if socket_at_meet is None else np.asarray(socket_at_meet, dtype=np.float64)
    offset = np.zeros(3) if peg_offset is None else np.asarray(peg_offset, dtype=np.float64)
    # Peg centre on the socket's axis: 10 cm past its centre (tip 4 cm out), then 3 cm past the pin's end.
    outside = socket_now + [0.16, 0, 0] - offset
    inside = socket_now + [0.04, 0, 0] - offset
    meet_roll_left = square_to_world_roll(left_base_xy, socket_hold, pick)
    meet_roll_right = square_to_world_roll(right_base_xy, outside, pick)
    left = [
        left_start,
        *pick_waypoints(INSERT_PICK_STEPS, socket_grasp, pick, left_roll, 0.04),
        Waypoint(230, tuple(socket_hold + [0, 0, GRASP_ABOVE_CENTER]), pick, meet_roll_left, GRIPPER_CLOSED),
        Waypoint(EPISODE_STEPS, tuple(socket_hold + [0, 0, GRASP_ABOVE_CENTER]), pick, meet_roll_left, GRIPPER_CLOSED),
    ]
    right = [
        right_start,
        *pick_waypoints(INSERT_PICK_STEPS, peg_grasp, pick, right_roll, 0.04),
        Waypoint(230, tuple(outside + [0, 0, 0.004]), pick, meet_roll_right, GRIPPER_CLOSED),
        Waypoint(260, tuple(outside + [0, 0, 0.004]), pick, meet_roll_right, GRIPPER_CLOSED),
        Waypoint(330, tuple(inside + [0, 0, 0.004]), pick, meet_roll_right, GRIPPER_CLOSED),
        Waypoint(EPISODE_STEPS, tuple(inside + [0, 0, 0.004]), pick, meet_roll_right, GRIPPER_CLOSED),
    ]
    return left, right


INSERT_MEASURE_STEP = 255
"""Step at which both objects are held still at the meeting point (the first pass measures them)."""

INSERT_ENTRY_STEP = 285
"""Step at which the peg's tip reaches the socket's opening (later passes measure its aim there)."""


def scripted_insertion(sim: AlohaSim, steps: int = EPISODE_STEPS, passes: int = 4) -> np.ndarray:
    """Joint trajectory (steps x 14) inserting the peg into the socket in a just-reset simulator.

    Physics is deterministic, so the plan is refined on scratch copies of the scene: the first
    pass measures where the socket and the peg really are once held at the meeting point; each
    later one where the peg's tip is, across the socket's axis, as it reaches the opening (the
    arm sags differently as it reaches in), and moves the approach by that miss."""
    qpos, arms, starts = _arms_at_start(sim)
    body = lambda geom: sim.physics.model.geom_bodyid[sim.physics.model.name2id(geom, "geom")]  # noqa: E731
    peg_body, socket_body = body("red_peg"), body("socket-1")
    peg = np.array(sim.physics.data.xpos[peg_body])
    socket = np.array(sim.physics.data.xpos[socket_body])
    peg[2] = sim.physics.named.model.geom_size["red_peg"][2]
    socket[2] = 0.022  # the socket's bottom wall is 2.2 cm below its centre
    bases = (arms[0].base_xy, arms[1].base_xy)
    plan = _solve(arms, qpos, insertion_waypoints(peg, socket, *starts, *bases), steps)
    scratch = AlohaSim(sim.task, cameras=())
    socket_at_meet, peg_offset = None, None
    for _ in range(passes):
        scratch.reset(sim.seed, sim.target)
        for step, action in enumerate(plan[:INSERT_ENTRY_STEP]):
            scratch.step(action)
            if step + 1 == INSERT_MEASURE_STEP and socket_at_meet is None:
                socket_at_meet = np.array(scratch.physics.data.xpos[socket_body])
                grasp = arms[1].pose(np.array(scratch.physics.data.qpos))[0]
                peg_offset = np.array(scratch.physics.data.xpos[peg_body]) - grasp
                break
        else:
            rotation = scratch.physics.data.xmat[peg_body].reshape(3, 3)
            tip = scratch.physics.data.xpos[peg_body] - 0.06 * rotation[:, 0]
            axis = scratch.physics.data.xpos[socket_body]
            miss = np.array([0.0, tip[1] - axis[1], tip[2] - axis[2]])
            peg_offset = peg_offset + miss  # aim the tip, not the centre, at the axis
        plan = _solve(arms, qpos, insertion_waypoints(peg, socket, *starts, *bases, socket_at_meet, peg_offset), steps)
    return plan
