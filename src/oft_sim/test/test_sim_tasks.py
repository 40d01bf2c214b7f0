"""The task registry: each task's scene, sampler, success rule, instructions and demonstrator (no ROS)."""

import numpy as np
import pytest

from oft_sim.scripted_policy import scripted_trajectory
from oft_sim.simulator import AlohaSim
from oft_sim.tasks import MAX_REWARD, TASKS, get_task
from oft_sim.tasks.handover_by_color import MIN_GAP_M


def test_registry_names_every_task_and_refuses_others():
    assert set(TASKS) == {"transfer_cube", "insertion", "handover_by_color"}
    with pytest.raises(ValueError, match="unknown task 'stack'"):
        get_task("stack")
    assert all(task.has_demonstrator for task in TASKS.values())


@pytest.mark.parametrize("name, reference", [("transfer_cube", "TransferCubeTask"), ("insertion", "InsertionTask")])
def test_success_rules_score_as_gym_aloha_does(name, reference):
    """Along the scripted demonstrations and random motions, every step's reward equals gym-aloha's own."""
    import gym_aloha.tasks.sim as gym_tasks

    rule = getattr(gym_tasks, reference)()
    sim = AlohaSim(name, cameras=())
    rng = np.random.default_rng(0)
    rewards = []
    for seed in range(2):
        sim.reset(seed)
        for action in scripted_trajectory(sim):
            sim.step(action)
            assert sim.reward == rule.get_reward(sim.physics), seed
            rewards.append(sim.reward)
        sim.reset(seed)
        start = sim.joint_positions()
        for _ in range(100):
            sim.step(np.clip(start + rng.normal(0, 0.3, start.shape), -3, 3))
            assert sim.reward == rule.get_reward(sim.physics), seed
    assert set(rewards) >= {0, 2, 4}  # the comparison covered grasped and finished states too


def test_handover_by_color_places_two_separate_cubes_and_names_either():
    task = get_task("handover_by_color")
    placements = [task.object_qpos(seed).reshape(2, 7) for seed in range(300)]
    gaps = [np.linalg.norm(p[0, :2] - p[1, :2]) for p in placements]
    assert min(gaps) >= MIN_GAP_M
    assert all(0.0 <= p[:, 0].min() and p[:, 0].max() <= 0.2 and 0.4 <= p[:, 1].min() for p in placements)
    targets = [task.default_target(seed) for seed in range(300)]
    assert 100 < targets.count("red") < 200
    assert task.instruction("blue") == "pick up the blue cube with the right arm and hand it over to the left arm"
    with pytest.raises(ValueError, match="not 'green'"):
        task.instruction("green")


def test_handover_by_color_succeeds_only_with_the_named_cube():
    sim = AlohaSim("handover_by_color", cameras=())
    for seed in range(4):
        named = get_task("handover_by_color").default_target(seed)
        other = "blue" if named == "red" else "red"
        sim.reset(seed)
        for action in scripted_trajectory(sim):  # the demonstrator hands over the named cube
            sim.step(action)
        assert (sim.success, sim.grasped) == (True, named), seed
        sim.reset(seed, other)
        wrong = scripted_trajectory(sim)  # hands over the other cube ...
        sim.reset(seed, named)  # ... while the instruction names this one
        for action in wrong:
            sim.step(action)
        assert sim.max_reward < MAX_REWARD and sim.grasped == other, seed


@pytest.mark.parametrize("name", ["insertion"])
def test_scripted_demonstrator_solves_the_task(name):
    """The task's demonstrator completes it (the full-rate figure: `python -m oft_sim.tasks.check`)."""
    sim = AlohaSim(name, cameras=())
    for seed in (2000, 2001):
        sim.reset(seed)
        for action in scripted_trajectory(sim):
            sim.step(action)
        assert sim.success, (name, seed, sim.max_reward)
