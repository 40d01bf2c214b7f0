"""Checkpoints: round trip, bit-identical predictions, refusals that load nothing, atomic saves."""

import json
import shutil

import numpy as np
import pytest

from oft_policy import names
from oft_policy.checkpoint import CheckpointError, load_policy, save_checkpoint
from oft_policy.testing.checkpoints import make_tiny_checkpoint, random_stats
from oft_policy.normalization import STATS_FILENAME


@pytest.fixture
def observation(make_images):
    images = dict(zip(names.CAMERA_NAMES, make_images(3, seed=1, shape=(480, 640, 3))))
    return images, "pick up the cube", np.linspace(-0.3, 0.3, len(names.ALOHA_JOINT_NAMES))


def test_round_trip_gives_bit_identical_predictions(tiny_checkpoint, observation):
    first, second = load_policy(tiny_checkpoint), load_policy(tiny_checkpoint)
    assert first.warm_up("something else entirely") > 0.0  # leaves nothing behind: compared with `second` below
    chunk = first.predict(*observation)
    assert chunk.shape == (25, 14) and chunk.dtype == np.float32
    assert np.array_equal(chunk, first.predict(*observation))  # deterministic in eval mode
    assert np.array_equal(chunk, second.predict(*observation))
    assert first.spec.model_id == second.spec.model_id and first.spec.model_id.startswith("oft-")
    assert first.spec.joint_names == names.ALOHA_JOINT_NAMES
    assert first.spec.camera_names == names.CAMERA_NAMES
    assert (first.spec.chunk_size, first.spec.action_dim, first.spec.control_period_s) == (25, 14, 0.02)
    low, high = first.stats.action_bounds
    assert np.all(chunk >= low.astype(np.float32) - 1e-5) and np.all(chunk <= high.astype(np.float32) + 1e-5)


def test_save_of_a_loaded_policy_reproduces_it(tiny_checkpoint, observation, tmp_path):
    policy = load_policy(tiny_checkpoint)
    again = save_checkpoint(tmp_path / "again", policy.model, policy.config, policy.stats, policy.tokenizer)
    reloaded = load_policy(again)
    assert np.array_equal(reloaded.predict(*observation), policy.predict(*observation))


def test_inputs_reach_the_model(tiny_checkpoint, observation, make_images):
    policy = load_policy(tiny_checkpoint)
    images, instruction, proprio = observation
    base = policy.predict(images, instruction, proprio)
    assert not np.array_equal(base, policy.predict(images, instruction, proprio + 0.2))
    assert not np.array_equal(base, policy.predict(images, "open the drawer", proprio))
    other = dict(images, cam_high=make_images(1, seed=7, shape=(240, 320, 3))[0])  # any HxW works
    assert not np.array_equal(base, policy.predict(other, instruction, proprio))


def test_predict_rejects_bad_observations(tiny_checkpoint, observation):
    policy = load_policy(tiny_checkpoint)
    images, instruction, proprio = observation
    with pytest.raises(ValueError, match="cam_left_wrist"):
        policy.predict({k: v for k, v in images.items() if k != "cam_left_wrist"}, instruction, proprio)
    with pytest.raises(ValueError, match="proprio"):
        policy.predict(images, instruction, proprio[:7])
    with pytest.raises(ValueError, match="proprio"):
        policy.predict(images, instruction, np.full(14, np.nan))
    with pytest.raises(ValueError, match="uint8"):
        policy.predict(dict(images, cam_high=images["cam_high"].astype(np.float32)), instruction, proprio)


def _copy(checkpoint, tmp_path):
    return shutil.copytree(checkpoint, tmp_path / "copy")


def test_refuses_a_checkpoint_without_stats(tiny_checkpoint, tmp_path):
    broken = _copy(tiny_checkpoint, tmp_path)
    (broken / STATS_FILENAME).unlink()
    with pytest.raises(CheckpointError, match="normalization stats"):
        load_policy(broken)


def test_refuses_dims_that_disagree_with_the_config(tiny_checkpoint, tmp_path):
    broken = _copy(tiny_checkpoint, tmp_path)
    config = json.loads((broken / "oft_config.json").read_text())
    left = names.arm_joint_names("left")  # config and stats say 7 joints; the saved weights are for 14
    config.update(action_dim=7, joint_names=list(left))
    (broken / "oft_config.json").write_text(json.dumps(config))
    random_stats(left).save(broken / STATS_FILENAME)
    with pytest.raises(CheckpointError, match="disagree with its config"):
        load_policy(broken)


def test_refuses_stats_for_other_joints_and_corrupted_files(tiny_checkpoint, tmp_path):
    broken = _copy(tiny_checkpoint, tmp_path)
    random_stats([f"j{i}" for i in range(14)]).save(broken / STATS_FILENAME)
    with pytest.raises(CheckpointError, match="joints"):
        load_policy(broken)
    shutil.copy(tiny_checkpoint / STATS_FILENAME, broken / STATS_FILENAME)
    with open(broken / "model.safetensors", "r+b") as handle:  # flip bytes at the end of the data
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(CheckpointError, match="manifest"):
        load_policy(broken)
    with pytest.raises(CheckpointError, match="not found"):
        load_policy(tmp_path / "nothing")


def test_save_is_atomic(tmp_path):
    from oft_policy.model import OFTConfig, build_model, build_tokenizer

    config = OFTConfig(camera_names=("cam_high",), chunk_size=2)
    model, tokenizer = build_model(config, seed=0), build_tokenizer(config)

    class FailingTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ckpt", model, config, random_stats(config.joint_names), FailingTokenizer())
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no staging leftovers
    with pytest.raises(CheckpointError, match="NormalizationStats"):
        save_checkpoint(tmp_path / "ckpt", model, config, None, tokenizer)
    path = save_checkpoint(tmp_path / "ckpt", model, config, random_stats(config.joint_names), tokenizer)
    with pytest.raises(CheckpointError, match="exists"):
        save_checkpoint(path, model, config, random_stats(config.joint_names), tokenizer)
    assert load_policy(path).predict({"cam_high": np.zeros((8, 8, 3), np.uint8)}, "go", np.zeros(14)).shape == (2, 14)


def test_make_tiny_checkpoint_options(tmp_path):
    joints = names.arm_joint_names("left")
    path = make_tiny_checkpoint(tmp_path / "left", joint_names=joints, camera_names=("cam_high",), chunk_size=8,
                                control_period_s=0.05, decoding="last_token_mlp", seed=3)
    policy = load_policy(path)
    assert policy.spec.joint_names == joints and policy.spec.control_period_s == 0.05
    chunk = policy.predict({"cam_high": np.zeros((48, 64, 3), np.uint8)}, "wave", np.zeros(7))
    assert chunk.shape == (8, 7)


def test_read_config_alone_and_refuses_an_unreadable_one(tiny_checkpoint, tmp_path):
    from oft_policy.checkpoint import read_config

    assert read_config(tiny_checkpoint) == load_policy(tiny_checkpoint).config
    broken = _copy(tiny_checkpoint, tmp_path)
    (broken / "oft_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="no readable config"):
        read_config(broken)
    with pytest.raises(CheckpointError, match="no readable config"):
        load_policy(broken)
