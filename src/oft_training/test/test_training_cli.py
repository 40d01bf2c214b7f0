"""Every console script answers --help; the shipped configs load; overrides parse."""

from pathlib import Path

import pytest

import oft_training
from oft_training.train_config import TrainConfigError, load_config, parse_override

MODULES = ["record", "fit_normalizer", "export", "train"]
REPO_CONFIG = Path(__file__).resolve().parents[2] / "oft_bringup" / "config" / "oft_aloha.yaml"


@pytest.mark.parametrize("name", MODULES)
def test_cli_help(name, capsys):
    module = __import__(f"oft_training.cli.{name}", fromlist=["main"])
    with pytest.raises(SystemExit) as exit_info:
        module.build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["export", "training"])
def test_bench_help(name, capsys):
    module = __import__(f"oft_training.bench.{name}", fromlist=["main"])
    with pytest.raises(SystemExit):
        module.build_parser().parse_args(["--help"])
    assert "usage" in capsys.readouterr().out


def test_shipped_configs_load():
    aloha = load_config(REPO_CONFIG, ["data.dataset=somewhere"])
    assert aloha["model"]["backbone"] == "openvla" and aloha["model"]["chunk_size"] == 25
    assert aloha["optimizer"]["weight_decay"] == 0.01 and aloha["optimizer"]["betas"] == [0.9, 0.999]
    assert aloha["ddp"]["find_unused_parameters"] is False and aloha["ddp"]["gradient_as_bucket_view"] is True
    tiny = load_config(Path(oft_training.__file__).parent / "configs" / "tiny_cpu.yaml", ["data.dataset=x"])
    assert tiny["model"]["backbone"] == "tiny"


def test_overrides_parse_and_fail_clearly():
    assert parse_override("optimizer.lr=3e-4") == {"optimizer": {"lr": 3e-4}}
    assert parse_override("model.camera_names=[cam_high]") == {"model": {"camera_names": ["cam_high"]}}
    with pytest.raises(TrainConfigError, match="section.key=value"):
        parse_override("lr=3")
    with pytest.raises(TrainConfigError, match="data.dataset is not set"):
        load_config(None, [])
    with pytest.raises(TrainConfigError, match="positive integer"):
        load_config(None, ["data.dataset=x", "training.max_steps=0"])
    for bad in ("-0.1", ".nan", "true", "loud"):
        with pytest.raises(TrainConfigError, match="proprio_noise_std must be a number >= 0"):
            load_config(None, ["data.dataset=x", f"training.proprio_noise_std={bad}"])


def test_the_model_section_is_the_policy_config():
    """Same keys and defaults as OFTConfig (less what the dataset gives), its checks at load, old names refused."""
    import dataclasses

    from oft_policy.model.config import OFTConfig
    from oft_training.train_config import DATASET_FIELDS

    model = load_config(None, ["data.dataset=x"])["model"]
    fields = {f.name: f.default for f in dataclasses.fields(OFTConfig) if f.name not in DATASET_FIELDS}
    assert set(model) == set(fields)
    assert {k: v for k, v in model.items() if k != "camera_names"} == {k: v for k, v in fields.items() if k != "camera_names"}
    assert model["camera_names"] is None  # the dataset's cameras
    with pytest.raises(TrainConfigError, match="model.action_head is now model.decoding"):
        load_config(None, ["data.dataset=x", "model.action_head=l1_regression"])
    with pytest.raises(TrainConfigError, match="model section: max_prefix_steps must lie in"):
        load_config(None, ["data.dataset=x", "model.chunk_size=4", "model.max_prefix_steps=4"])
    with pytest.raises(TrainConfigError, match="train trains one of"):
        load_config(None, ["data.dataset=x", "model.decoding=autoregressive"])


def test_record_stops_cleanly_when_a_signal_lands_inside_spin_once(monkeypatch):
    """Ctrl-C / SIGTERM may shut the context down after the loop's rclpy.ok() check and before
    spin_once builds its wait set; rclpy then raises RCLError. That is a stop, not a failure."""
    import rclpy

    from oft_training.cli import record
    from oft_training.recording import BagRecorder

    real_spin_once = rclpy.spin_once
    calls = []

    def signal_inside_spin_once(node, timeout_sec=None):
        calls.append(timeout_sec)
        rclpy.try_shutdown()  # what rclpy's signal handler does
        real_spin_once(node, timeout_sec=timeout_sec)

    rclpy.init()
    try:
        node = rclpy.create_node("record_signal_race")
        monkeypatch.setattr(rclpy, "spin_once", signal_inside_spin_once)
        recorder = BagRecorder(node, {"/record_signal_race": "std_msgs/msg/String"})
        record.spin_until_done(node, recorder, duration=5.0, label="test")  # returns, no RCLError
        assert len(calls) == 1
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
