"""The plain-Python simulator core and the scripted demonstrator, without ROS."""

import numpy as np
import pytest

from oft_policy.names import CAMERA_NAMES
from oft_policy.runtime.limits import VX300S_MAX_VELOCITY
from oft_sim.scripted_policy import EPISODE_STEPS, scripted_trajectory
from oft_sim.simulator import (
    ACTION_DIM,
    AlohaSim,
    CONTROL_PERIOD_S,
    action_to_ctrl,
    gripper_to_normalized,
    normalized_to_gripper,
)


@pytest.fixture(scope="module")
def sim():
    return AlohaSim("transfer_cube", image_size=(48, 64))


def cube_position(sim):
    return np.array(sim.physics.named.data.qpos["red_box_joint"][:3])


def test_reset_places_cube_by_seed(sim):
    sim.reset(3)
    first = cube_position(sim)
    sim.reset(4)
    other = cube_position(sim)
    sim.reset(3)
    assert np.allclose(cube_position(sim), first)
    assert not np.allclose(other, first)
    assert 0.0 <= first[0] <= 0.2 and 0.4 <= first[1] <= 0.6  # gym-aloha's sampling box
    assert sim.steps == 0 and sim.reward == 0 and not sim.success


def test_step_tracks_joint_targets_and_keeps_time(sim):
    sim.reset(0)
    start = sim.joint_positions()
    target = start.copy()
    target[0] += 0.3  # left waist
    target[13] = 1.0  # right gripper fully open
    for _ in range(50):
        sim.step(target)
    measured = sim.joint_positions()
    assert abs(measured[0] - target[0]) < 0.02
    assert abs(measured[13] - 1.0) < 0.05
    assert abs(measured[7] - start[7]) < 0.02  # right waist not commanded to move
    assert sim.time == pytest.approx(50 * CONTROL_PERIOD_S)


@pytest.mark.parametrize("bad", [np.zeros(13), np.full(ACTION_DIM, np.nan), np.zeros((2, 7))])
def test_malformed_action_is_refused_and_changes_nothing(sim, bad):
    sim.reset(0)
    before_qpos = np.array(sim.physics.data.qpos)
    before_ctrl = np.array(sim.physics.data.ctrl)
    with pytest.raises(ValueError):
        sim.step(bad)
    assert sim.steps == 0
    assert np.array_equal(sim.physics.data.qpos, before_qpos)
    assert np.array_equal(sim.physics.data.ctrl, before_ctrl)


def test_render_three_cameras_at_requested_size(sim):
    sim.reset(0)
    images = sim.render()
    assert set(images) == set(CAMERA_NAMES)
    for image in images.values():
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert image.std() > 5  # a real scene, not a blank frame
    # the top camera sees the red cube: some strongly red pixels
    high = images["cam_high"].astype(int)
    assert np.any((high[..., 0] > 150) & (high[..., 1] < 80) & (high[..., 2] < 80))


def test_gripper_normalization_round_trip():
    opening = np.linspace(0, 1, 5)
    assert np.allclose(gripper_to_normalized(normalized_to_gripper(opening)), opening)
    ctrl = action_to_ctrl(np.r_[np.zeros(6), 1.0, np.zeros(6), 0.0])
    assert ctrl[6] == pytest.approx(0.058) and ctrl[7] == pytest.approx(-0.058)
    assert ctrl[14] == pytest.approx(0.01844) and ctrl[15] == pytest.approx(-0.01844)


def test_unknown_task_and_camera_are_clear_errors():
    with pytest.raises(ValueError, match="unknown task"):
        AlohaSim("stack_blocks")
    with pytest.raises(ValueError, match="unknown cameras"):
        AlohaSim("transfer_cube", cameras=("cam_low",))


def test_insertion_scene_resets_and_steps():
    sim = AlohaSim("insertion", cameras=())
    sim.reset(1)
    sim.step(sim.joint_positions())
    assert sim.reward == 0 and sim.steps == 1


@pytest.mark.parametrize("seed", [5, 45])
def test_scripted_policy_transfers_the_cube(sim, seed):
    sim.reset(seed)
    trajectory = scripted_trajectory(sim)
    assert trajectory.shape == (EPISODE_STEPS, ACTION_DIM)
    # Within the executor's velocity limit, so a policy imitating it is never clamped.
    speeds = np.abs(np.diff(np.vstack([sim.joint_positions(), trajectory]), axis=0)) / CONTROL_PERIOD_S
    assert speeds.max() < VX300S_MAX_VELOCITY
    for action in trajectory:
        sim.step(action)
    assert sim.success and sim.reward == 4


def test_holding_still_does_not_succeed(sim):
    sim.reset(5)
    hold = sim.joint_positions()
    for _ in range(100):
        sim.step(hold)
    assert sim.max_reward == 0 and not sim.success


def test_spread_seeds_cover_the_cube_region_better_than_consecutive_seeds():
    from oft_sim.demos import spread_seeds
    from oft_sim.simulator import TASKS

    sampler = TASKS["transfer_cube"].object_qpos
    chosen = spread_seeds("transfer_cube", 50, range(1000))
    assert len(set(chosen)) == 50 and all(0 <= s < 1000 for s in chosen)
    grid = np.stack(np.meshgrid(np.linspace(0, 0.2, 41), np.linspace(0.4, 0.6, 41)), -1).reshape(-1, 2)

    def widest_gap(seeds):  # the farthest any cube position is from its nearest demonstration (m)
        demos = np.array([sampler(s)[:2] for s in seeds])
        return np.linalg.norm(grid[:, None] - demos[None], axis=2).min(axis=1).max()

    assert widest_gap(chosen) < 0.8 * widest_gap(range(50))
    with pytest.raises(ValueError, match="cannot pick"):
        spread_seeds("transfer_cube", 5, range(3))
