"""probe_policy's measurements, checked on two policies whose answers are known: an oracle that
replays the scripted demonstrator from whatever state it is shown, and a blind one that holds still."""

import json

import numpy as np
import pytest

from oft_sim.probe import SeedProbe, probe_seed, summarize
from oft_sim.scripted_policy import scripted_trajectory
from oft_sim.simulator import AlohaSim

pytestmark = pytest.mark.timeout(300)

SIZE = (32, 32)
CHUNK = 50


def oracle_for(seed):
    """predict = the demonstrator's next CHUNK actions from the demo state nearest the proprio."""
    sim = AlohaSim(cameras=(), image_size=SIZE)
    sim.reset(seed)
    demo = scripted_trajectory(sim)
    states = []
    for action in demo:
        states.append(sim.joint_positions())
        sim.step(action)
    states = np.array(states)

    def predict(images, proprio):
        assert set(images) == {"cam_high", "cam_left_wrist", "cam_right_wrist"}
        t = int(np.argmin(np.abs(states - proprio).sum(axis=1)))
        return demo[np.minimum(np.arange(t, t + CHUNK), len(demo) - 1)]

    return predict


def hold_still(images, proprio):
    return np.repeat(np.asarray(proprio)[None], CHUNK, axis=0)


def test_the_oracle_aims_tracks_and_succeeds_where_a_blind_policy_does_not():
    seeds = (1000, 1001, 1002)
    sim = AlohaSim(image_size=SIZE)
    oracle = [probe_seed(oracle_for(s), s, sim) for s in seeds]
    blind = [probe_seed(hold_still, s, sim) for s in seeds]

    sharp = summarize(oracle)
    assert sharp["localization"]["aim_error_cm_mean"] == 0.0
    assert sharp["localization"]["blind_aim_error_cm_mean"] > 0.3  # the seeds' cubes lie apart
    assert sharp["localization"]["correlation_x"] == pytest.approx(1.0)
    assert sharp["tracking_error_cm"]["max"] == 0.0
    assert sharp["closed_loop"] == {"successes": 3, "episodes": 3, "max_reward_counts": {"4": 3}}

    dull = summarize(blind)
    assert dull["localization"]["aim_error_cm_mean"] > 3.0  # the start pose is nowhere near a cube
    assert dull["tracking_error_cm"]["mean"] > 1.0
    assert dull["closed_loop"]["successes"] == 0
    json.dumps(dull)  # the CLI writes it as JSON


def test_a_policy_that_ignores_the_images_scores_the_blind_aim():
    """Aiming every seed at the same point: error equals the spread of the demonstrators' aims."""
    demo = np.array([[0.0, 0.4, 0.1], [0.1, 0.5, 0.1], [0.2, 0.3, 0.1], [0.1, 0.4, 0.1]])
    same = [SeedProbe(i, demo.mean(axis=0), d, 0.0, False, 0) for i, d in enumerate(demo)]
    result = summarize(same)["localization"]
    assert result["aim_error_cm_mean"] == pytest.approx(result["blind_aim_error_cm_mean"])
    assert result["correlation_x"] is None  # a constant aim has no correlation to speak of


def test_probe_policy_command_on_the_reference_checkpoint(console, ros_env, repo_root, tmp_path):
    import subprocess

    argv = console("oft_sim", "probe_policy", "oft_sim.cli.probe_policy")
    checkpoint = repo_root / "checkpoints" / "sim_transfer_cube_tiny"
    out = tmp_path / "probe.json"
    done = subprocess.run(argv + ["--checkpoint", str(checkpoint), "--episodes", "1", "--json", str(out)],
                          env=ros_env, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["seeds"] == [1000] and result["executed_per_chunk"] == 25 and result["image_size"] == [96, 128]
    assert result["tracking_error_cm"]["mean"] < 2.0  # shown the demonstrator's states, it follows them
    assert result["closed_loop"]["episodes"] == 1

    refused = subprocess.run(argv + ["--checkpoint", str(checkpoint), "--execute-steps", "51"],
                             env=ros_env, capture_output=True, text=True, timeout=200)
    assert refused.returncode == 1 and "between 1 and the checkpoint's chunk size 50" in refused.stderr
    renamed = subprocess.run(argv + ["--checkpoint", str(checkpoint), "--chunk-size", "25"],
                             env=ros_env, capture_output=True, text=True, timeout=200)
    assert renamed.returncode == 2 and "--chunk-size is now --execute-steps" in renamed.stderr
