"""NormalizationStats: z-score proprio, [-1, 1] actions by a named scheme, JSON round trip."""

import json
import logging

import numpy as np
import pytest

from oft_policy.names import ALOHA_JOINT_NAMES
from oft_policy.normalization import NormalizationStats, StatsError

D = len(ALOHA_JOINT_NAMES)


@pytest.fixture
def samples():
    rng = np.random.default_rng(0)
    proprio = rng.normal(loc=np.linspace(-1, 1, D), scale=np.linspace(0.1, 0.5, D), size=(2000, D))
    actions = proprio + rng.normal(scale=0.05, size=proprio.shape)
    return proprio, actions


def test_proprio_round_trip_and_zscore(samples):
    proprio, actions = samples
    stats = NormalizationStats.fit(proprio, actions, ALOHA_JOINT_NAMES)
    normalized = stats.normalize_proprio(proprio)
    assert np.allclose(normalized.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(normalized.std(axis=0), 1, atol=1e-3)
    assert np.allclose(stats.denormalize_proprio(normalized), proprio, atol=1e-5)


def test_zero_variance_dim_gets_std_one_and_warns(samples, caplog):
    proprio, actions = samples
    proprio = proprio.copy()
    proprio[:, 6] = 0.3  # a gripper that never moved in the recording
    with caplog.at_level(logging.WARNING):
        stats = NormalizationStats.fit(proprio, actions, ALOHA_JOINT_NAMES)
    assert stats.zero_variance_proprio == ("left_gripper",)
    assert "left_gripper" in caplog.text
    value = np.full(D, 0.0)
    value[6] = 0.8
    assert stats.normalize_proprio(value)[6] == pytest.approx(0.5)  # (0.8 - 0.3) / 1
    assert np.isfinite(stats.normalize_proprio(proprio)).all()


@pytest.mark.parametrize("scheme", ["min_max", "q01_q99"])
def test_actions_map_to_unit_range_clipped(samples, scheme):
    proprio, actions = samples
    stats = NormalizationStats.fit(proprio, actions, ALOHA_JOINT_NAMES, action_scheme=scheme)
    normalized = stats.normalize_action(actions)
    assert normalized.min() >= -1.0 and normalized.max() <= 1.0
    low, high = stats.action_bounds
    inside = np.all((actions >= low) & (actions <= high), axis=1)
    assert np.allclose(stats.denormalize_action(normalized[inside]), actions[inside], atol=1e-5)
    if scheme == "min_max":
        assert inside.all()
    else:  # q01/q99 clips about 2% of each dim's samples
        assert 0.5 < inside.mean() < 0.99


def test_equal_bounds_map_to_zero(samples):
    proprio, actions = samples
    actions = actions.copy()
    actions[:, 13] = 1.0
    stats = NormalizationStats.fit(proprio, actions, ALOHA_JOINT_NAMES)
    assert np.all(stats.normalize_action(actions)[:, 13] == 0.0)
    assert np.all(stats.denormalize_action(np.zeros(D))[13] == pytest.approx(1.0))


def test_json_round_trip_is_exact(samples, tmp_path):
    proprio, actions = samples
    stats = NormalizationStats.fit(proprio, actions, ALOHA_JOINT_NAMES, action_scheme="q01_q99")
    loaded = NormalizationStats.load(stats.save(tmp_path / "stats.json"))
    assert loaded.action_scheme == "q01_q99"
    assert loaded.joint_names == ALOHA_JOINT_NAMES
    x = proprio[:5]
    assert np.array_equal(loaded.normalize_proprio(x), stats.normalize_proprio(x))
    assert np.array_equal(loaded.normalize_action(x), stats.normalize_action(x))


def test_bad_inputs_are_clear_errors(samples, tmp_path):
    proprio, actions = samples
    with pytest.raises(StatsError, match="NaN"):
        NormalizationStats.fit(np.full((3, D), np.nan), actions, ALOHA_JOINT_NAMES)
    with pytest.raises(StatsError, match="scheme"):
        NormalizationStats.fit(proprio, actions, ALOHA_JOINT_NAMES, action_scheme="zscore")
    with pytest.raises(StatsError, match="dims disagree"):
        NormalizationStats.fit(proprio, actions, ALOHA_JOINT_NAMES[:7])
    stats = NormalizationStats.fit(proprio, actions, ALOHA_JOINT_NAMES)
    with pytest.raises(StatsError, match="dims"):
        stats.normalize_proprio(np.zeros(7))
    with pytest.raises(StatsError, match="not found"):
        NormalizationStats.load(tmp_path / "missing.json")
    broken = stats.to_dict()
    del broken["proprio"]["std"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(StatsError, match="proprio"):
        NormalizationStats.load(tmp_path / "broken.json")
