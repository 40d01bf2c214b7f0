"""Recordings in robot units become the policy's convention through one calibration, and anything in
another convention or calibration is refused with a clear message before a file is written."""

import json
from pathlib import Path

import numpy as np
import pytest
from oft_policy import names
from oft_policy.calibration import PRESETS, ConventionError, convention_record
from oft_policy.checkpoint import CheckpointError, load_policy
from oft_policy.testing.checkpoints import make_tiny_checkpoint, random_stats

import oft_training
from oft_training import synthetic
from oft_training.bagread import BagError
from oft_training.cli import export as export_cli
from oft_training.cli import fit_normalizer as fit_cli
from oft_training.dataset import EpisodeTable
from oft_training.exporter import PROVENANCE_PATH, ExportOptions, export
from oft_training.fitting import fit_from_bags
from oft_training.train_config import TrainConfigError, load_config
from oft_training.trainer import train

CAMERAS = ("cam_high",)
TINY_CONFIG = Path(oft_training.__file__).resolve().parent / "configs" / "tiny_cpu.yaml"
GRIPPERS = [names.ALOHA_JOINT_NAMES.index(n) for n in ("left_gripper", "right_gripper")]


def test_export_turns_robot_units_into_the_convention_and_records_it(tmp_path):
    bag = synthetic.write_bag(tmp_path / "bag", seconds=0.6, cameras=CAMERAS)
    export([bag], tmp_path / "ds", ExportOptions("x", cameras=CAMERAS, min_frames=10), progress=False)
    table = EpisodeTable(tmp_path / "ds")
    # The bag holds gripper radians and finger metres; the dataset the normalized values they came from.
    assert 0.0 < table.state[:, GRIPPERS].min() and table.state[:, GRIPPERS].max() < 1.0
    assert 0.0 < table.action[:, GRIPPERS].min() and table.action[:, GRIPPERS].max() < 1.1
    recorded = json.loads((tmp_path / "ds" / PROVENANCE_PATH).read_text())["convention"]
    assert recorded == convention_record(synthetic.CALIBRATION)


def test_a_bag_of_another_rig_exported_without_its_calibration_is_refused(tmp_path, capsys):
    """Recorded on an original ALOHA (its gripper radians), exported as if from an ALOHA 2: refused."""
    bag = synthetic.write_bag(tmp_path / "bag", seconds=0.6, cameras=CAMERAS, calibration=PRESETS["aloha1"])
    out = tmp_path / "ds"
    code = export_cli.main(["--bags", str(bag), "--out", str(out), "--instruction", "x", "--cameras", *CAMERAS,
                            "--min-frames", "10"])
    assert code == 2 and "far outside 0 (closed) .. 1 (open)" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ConventionError, match="aloha2"):
        fit_from_bags([bag], progress=False)
    # With the rig's own calibration it converts.
    assert export_cli.main(["--bags", str(bag), "--out", str(out), "--instruction", "x", "--cameras", *CAMERAS,
                            "--min-frames", "10", "--calibration", "aloha1"]) == 0
    table = EpisodeTable(out)
    assert 0.0 < table.state[:, GRIPPERS].min() and table.state[:, GRIPPERS].max() < 1.0


def test_a_bag_with_grippers_already_normalized_is_refused(tmp_path):
    """The suite's old 7-name joint states (no finger, gripper already 0..1) are not the driver's."""
    from rosbags.rosbag2 import Writer

    from oft_training import msgtypes
    from oft_training.recording import BAG_VERSION

    store = msgtypes.new_typestore()
    JointState, Header, Time = (store.types[t] for t in (msgtypes.JOINT_STATE, "std_msgs/msg/Header",
                                                         "builtin_interfaces/msg/Time"))
    with Writer(tmp_path / "bag", version=BAG_VERSION) as writer:
        connections = {t: writer.add_connection(t, msgtypes.JOINT_STATE, typestore=store)
                       for t in names.FOLLOWER_JOINT_STATE_TOPICS + names.LEADER_JOINT_STATE_TOPICS}
        for k in range(20):
            t_ns = synthetic.T0_NS + k * 10_000_000
            for topic, connection in connections.items():
                msg = JointState(header=Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=""),
                                 name=list(names.ARM_JOINTS), position=np.full(7, 0.5), velocity=np.zeros(0),
                                 effort=np.zeros(0))
                writer.write(connection, t_ns, bytes(store.serialize_cdr(msg, msgtypes.JOINT_STATE)))
    with pytest.raises(BagError, match="lacks left_finger"):
        fit_from_bags([tmp_path / "bag"], progress=False)


def test_train_refuses_a_normalizer_of_another_calibration_or_none(tmp_path, capsys):
    bag = synthetic.write_bag(tmp_path / "bag", seconds=0.8, cameras=CAMERAS)
    dataset = tmp_path / "ds"
    export([bag], dataset, ExportOptions("x", cameras=CAMERAS, min_frames=10), progress=False)
    # Same bag, fitted as if the followers' gripper joints had another range: the records disagree.
    other = PRESETS["aloha2"].with_overrides(leader_joint=[-0.06, 0.84])
    fitted = fit_from_bags([bag], calibration=other, progress=False).save(tmp_path / "other.json")
    config = load_config(TINY_CONFIG, [f"data.dataset={dataset}", f"data.stats_path={fitted}",
                                       f"training.output_dir={tmp_path / 'run'}", "training.max_steps=2",
                                       "data.val_episodes=0"])
    with pytest.raises(TrainConfigError, match="leader_joint"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()
    unrecorded = json.loads(fitted.read_text())
    del unrecorded["convention"]
    (tmp_path / "none.json").write_text(json.dumps(unrecorded))
    config["data"]["stats_path"] = str(tmp_path / "none.json")
    with pytest.raises(TrainConfigError, match="records no 'convention'"):
        train(config, progress=False)
    assert fit_cli.main(["--bags", str(bag), "--out", str(tmp_path / "good.json")]) == 0
    assert "convention aloha_dataset, calibration aloha2" in capsys.readouterr().out


def test_checkpoints_without_the_convention_or_in_another_refuse_to_load(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "ckpt")
    assert load_policy(path).spec.action_dim == 14
    stats = random_stats(names.ALOHA_JOINT_NAMES)
    for index, (convention, message) in enumerate(((None, "records no 'convention'"),
                                                   ({"name": "robot_units"}, "robot_units"))):
        bad = stats.__class__(**{**stats.__dict__, "convention": convention})
        with pytest.raises(CheckpointError, match=message):
            make_tiny_checkpoint(tmp_path / f"bad_{index}", stats=bad)
        assert not (tmp_path / f"bad_{index}").exists()
    # Stats stripped of their convention after saving: refused on load, before any weight is read.
    record = json.loads((path / "normalization.json").read_text())
    record.pop("convention")
    (path / "normalization.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="records no 'convention'"):
        load_policy(path)
