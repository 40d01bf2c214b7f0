"""Leader gripper angles -> follower units: export and fit_normalizer map them the same way, on real bags."""

import json

import numpy as np
import pytest
from oft_policy import names
from oft_policy.normalization import NormalizationStats

from oft_training import synthetic
from oft_training.cli import export as export_cli
from oft_training.cli import fit_normalizer as fit_cli
from oft_training.dataset import EpisodeTable
from oft_training.exporter import PROVENANCE_PATH, ExportOptions, export
from oft_training.fitting import fit_from_bags
from oft_training.gripper_map import (
    DEFAULT_GRIPPER_MAP, GRIPPER_COLUMNS, IDENTITY_GRIPPER_MAP, PRESETS, GripperMap, GripperMapError, parse_gripper_map,
)

CAMERAS = ("cam_high",)
LEFT, RIGHT = GRIPPER_COLUMNS
ARM_COLUMNS = [c for c in range(len(names.ALOHA_JOINT_NAMES)) if c not in GRIPPER_COLUMNS]
SWITCH_S = 0.5  # the left gripper closes and the right one opens at this time
FRAMES = 49  # a 1 s bag at 50 fps, camera at 30 Hz (the alignment rule; see test_alignment_rule_on_known_bag)


def leader_positions_with_real_grippers(gripper_map):
    """Synthetic leader arms whose grippers sit at the leader's published open/close angles."""
    def positions(t):
        values = synthetic.follower_positions(t) + 0.01  # arm joints as the stock synthetic leader
        left_open = t < SWITCH_S
        values[LEFT] = gripper_map.leader_open if left_open else gripper_map.leader_close
        values[RIGHT] = gripper_map.leader_close if left_open else gripper_map.leader_open
        return values
    return positions


@pytest.fixture
def leader_bag(tmp_path, monkeypatch):
    """Write a 1 s bag (leader arms, no commanded action unless asked) with real leader gripper angles."""
    def write(gripper_map, name="bag", commanded_action=False):
        monkeypatch.setattr(synthetic, "leader_positions", leader_positions_with_real_grippers(gripper_map))
        return synthetic.write_bag(tmp_path / name, seconds=1.0, joint_hz=100, camera_hz=30, cameras=CAMERAS,
                                   commanded_action=commanded_action)
    return write


def frame_sample_times() -> np.ndarray:
    """The joint-message time (s) each exported frame takes: the newest 100 Hz sample at or before it."""
    frame_times = (3 + np.arange(FRAMES) * 20_000_000) / 1e9
    return np.floor(frame_times * 100 + 1e-9) / 100


def expected_follower_grippers(gripper_map) -> tuple:
    left_open = frame_sample_times() < SWITCH_S
    opened, closed = gripper_map.follower_open, gripper_map.follower_close
    return np.where(left_open, opened, closed), np.where(left_open, closed, opened)


def raw_leader_actions(gripper_map) -> np.ndarray:
    positions = leader_positions_with_real_grippers(gripper_map)
    return np.stack([positions(t) for t in frame_sample_times()])


def test_presets_map_open_to_open_and_close_to_close():
    for gripper_map in (PRESETS["interbotix"], PRESETS["act"]):
        leader = [gripper_map.leader_open, gripper_map.leader_close, (gripper_map.leader_open + gripper_map.leader_close) / 2]
        follower = [gripper_map.follower_open, gripper_map.follower_close,
                    (gripper_map.follower_open + gripper_map.follower_close) / 2]
        np.testing.assert_allclose(gripper_map.to_follower(leader), follower, atol=1e-12)
    reversed_sign = GripperMap("reversed", 1.0, 0.0, -0.5, 0.5)  # follower closes towards +0.5
    np.testing.assert_allclose(reversed_sign.to_follower([1.0, 0.0, 0.25]), [-0.5, 0.5, 0.25], atol=1e-12)


def test_apply_changes_only_the_gripper_columns():
    leader = np.tile(np.linspace(-0.5, 0.5, 14), (3, 1))
    before = leader.copy()
    mapped = DEFAULT_GRIPPER_MAP.apply(leader)
    np.testing.assert_array_equal(leader, before)  # the input is not modified
    np.testing.assert_array_equal(mapped[:, ARM_COLUMNS], leader[:, ARM_COLUMNS])
    np.testing.assert_allclose(mapped[:, GRIPPER_COLUMNS], DEFAULT_GRIPPER_MAP.to_follower(leader[:, GRIPPER_COLUMNS]))
    assert not np.allclose(mapped[:, GRIPPER_COLUMNS], leader[:, GRIPPER_COLUMNS])
    assert IDENTITY_GRIPPER_MAP.apply(leader) is leader


def test_export_and_fit_map_leader_grippers_to_follower_units(leader_bag, tmp_path):
    gripper_map = DEFAULT_GRIPPER_MAP
    bag = leader_bag(gripper_map)
    out = tmp_path / "ds"
    report = export([bag], out, ExportOptions("fold", cameras=CAMERAS, fps=50, min_frames=10), progress=False)
    action = EpisodeTable(out).action
    assert report.action_sources == {str(bag): "leader"} and action.shape == (FRAMES, 14)

    left, right = expected_follower_grippers(gripper_map)
    np.testing.assert_allclose(action[:, LEFT], left, atol=1e-6)
    np.testing.assert_allclose(action[:, RIGHT], right, atol=1e-6)
    assert all(np.isclose(action[:, LEFT], value, atol=1e-6).any() for value in (left[0], left[-1]))  # both seen
    np.testing.assert_allclose(action[:, ARM_COLUMNS], raw_leader_actions(gripper_map)[:, ARM_COLUMNS], atol=1e-6)

    provenance = json.loads((out / PROVENANCE_PATH).read_text())
    assert provenance["action_source_by_recording"] == {str(bag): "leader"}
    assert provenance["leader_gripper_map"] == gripper_map.to_dict()

    # fit_normalizer maps the same way: its action bounds are the exported actions' bounds.
    result = fit_from_bags([bag], progress=False)
    low, high = result.stats.action_bounds
    np.testing.assert_allclose(low[list(GRIPPER_COLUMNS)], action[:, GRIPPER_COLUMNS].min(0), atol=1e-6)
    np.testing.assert_allclose(high[list(GRIPPER_COLUMNS)], action[:, GRIPPER_COLUMNS].max(0), atol=1e-6)
    # Arm joints: fit samples every 10 ms message, export a 20 ms frame grid; the bounds differ by < one step.
    np.testing.assert_allclose(low[ARM_COLUMNS], action[:, ARM_COLUMNS].min(0), atol=0.02)
    np.testing.assert_allclose(high[ARM_COLUMNS], action[:, ARM_COLUMNS].max(0), atol=0.02)
    assert result.provenance()["leader_gripper_map"] == gripper_map.to_dict()


def test_cli_option_has_one_name_and_one_meaning(leader_bag, tmp_path, capsys):
    gripper_map = PRESETS["act"]
    bag = leader_bag(gripper_map)
    stats_path, out = tmp_path / "stats.json", tmp_path / "ds"
    assert fit_cli.main(["--bags", str(bag), "--out", str(stats_path), "--leader-gripper-map", "act"]) == 0
    assert export_cli.main(["--bags", str(bag), "--out", str(out), "--instruction", "fold", "--cameras", *CAMERAS,
                            "--min-frames", "10", "--leader-gripper-map", "act"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("leader gripper map: act (leader open 0.3083 / close -0.6842") == 2

    action = EpisodeTable(out).action
    left, right = expected_follower_grippers(gripper_map)
    np.testing.assert_allclose(action[:, LEFT], left, atol=1e-6)
    np.testing.assert_allclose(action[:, RIGHT], right, atol=1e-6)
    stats = NormalizationStats.load(stats_path)  # the provenance entry does not disturb the stats reader
    columns = list(GRIPPER_COLUMNS)
    np.testing.assert_allclose(stats.action_bounds[0][columns], [gripper_map.follower_close] * 2, atol=1e-9)
    np.testing.assert_allclose(stats.action_bounds[1][columns], [gripper_map.follower_open] * 2, atol=1e-9)
    saved = json.loads(stats_path.read_text())["provenance"]
    assert saved == {"action_source_by_bag": {str(bag): "leader"}, "leader_gripper_map": gripper_map.to_dict()}
    assert json.loads((out / PROVENANCE_PATH).read_text())["leader_gripper_map"] == saved["leader_gripper_map"]


def test_identity_keeps_leader_grippers_raw(leader_bag, tmp_path):
    leader_units = DEFAULT_GRIPPER_MAP
    bag = leader_bag(leader_units)
    out = tmp_path / "ds"
    export([bag], out, ExportOptions("fold", cameras=CAMERAS, fps=50, min_frames=10,
                                     leader_gripper_map=parse_gripper_map("identity")), progress=False)
    np.testing.assert_allclose(EpisodeTable(out).action, raw_leader_actions(leader_units), atol=1e-6)
    low, high = fit_from_bags([bag], progress=False, leader_gripper_map=IDENTITY_GRIPPER_MAP).stats.action_bounds
    np.testing.assert_allclose(low[list(GRIPPER_COLUMNS)], [leader_units.leader_close] * 2, atol=1e-9)
    np.testing.assert_allclose(high[list(GRIPPER_COLUMNS)], [leader_units.leader_open] * 2, atol=1e-9)


def test_commanded_action_bags_are_not_mapped(leader_bag, tmp_path):
    leader_units = DEFAULT_GRIPPER_MAP
    bag = leader_bag(leader_units, commanded_action=True)  # commanded = leader positions + 1, published as is
    out = tmp_path / "ds"
    report = export([bag], out, ExportOptions("fold", cameras=CAMERAS, fps=50, min_frames=10), progress=False)
    assert report.action_sources == {str(bag): "commanded"}
    np.testing.assert_allclose(EpisodeTable(out).action, raw_leader_actions(leader_units) + 1.0, atol=1e-6)
    low, high = fit_from_bags([bag], progress=False).stats.action_bounds
    np.testing.assert_allclose(low[list(GRIPPER_COLUMNS)], [leader_units.leader_close + 1.0] * 2, atol=1e-9)
    np.testing.assert_allclose(high[list(GRIPPER_COLUMNS)], [leader_units.leader_open + 1.0] * 2, atol=1e-9)


@pytest.mark.parametrize("numbers, side", [((0.3, 0.3, 1.0, 0.0), "leader"), ((1.0, 0.0, 0.6, 0.6), "follower")])
def test_a_map_with_open_equal_to_close_is_refused(numbers, side):
    with pytest.raises(GripperMapError, match=f"{side} open and close are both"):
        GripperMap("bad", *numbers)
    with pytest.raises(GripperMapError, match=f"{side} open and close are both"):
        parse_gripper_map(",".join(str(n) for n in numbers))


def test_malformed_maps_are_refused():
    with pytest.raises(GripperMapError, match="neither a preset .*interbotix, act, identity.* nor four numbers"):
        parse_gripper_map("widowx")
    with pytest.raises(GripperMapError, match="nor four numbers"):
        parse_gripper_map("1.0,0.0,1.0")
    with pytest.raises(GripperMapError, match="finite"):
        GripperMap("bad", float("nan"), 0.0, 1.0, 0.0)


def test_cli_refuses_a_bad_map_before_writing(leader_bag, tmp_path, capsys):
    bag = leader_bag(DEFAULT_GRIPPER_MAP)
    code = export_cli.main(["--bags", str(bag), "--out", str(tmp_path / "ds"), "--instruction", "x",
                            "--cameras", *CAMERAS, "--leader-gripper-map=-0.2,-0.2,1.0,0.0"])
    assert code == 2 and "leader open and close are both -0.2" in capsys.readouterr().err
    code = fit_cli.main(["--bags", str(bag), "--out", str(tmp_path / "stats.json"), "--leader-gripper-map", "1,0,2,2"])
    assert code == 2 and "follower open and close are both 2.0" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_training_refuses_stats_and_dataset_mapped_differently(leader_bag, tmp_path):
    from oft_training.train_config import TrainConfigError
    from oft_training.trainer import load_stats

    bag = leader_bag(DEFAULT_GRIPPER_MAP)
    out = tmp_path / "ds"
    export([bag], out, ExportOptions("fold", cameras=CAMERAS, fps=50, min_frames=10), progress=False)
    table = EpisodeTable(out)
    same, other = tmp_path / "same.json", tmp_path / "other.json"
    fit_from_bags([bag], progress=False).save(same)
    fit_from_bags([bag], progress=False, leader_gripper_map=PRESETS["act"]).save(other)
    names_ = names.ALOHA_JOINT_NAMES
    assert load_stats({"data": {"stats_path": str(same)}}, table, [0], names_).dim == 14
    with pytest.raises(TrainConfigError, match="leader gripper map 'act'.*'interbotix'"):
        load_stats({"data": {"stats_path": str(other)}}, table, [0], names_)
