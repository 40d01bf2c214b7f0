"""OFTConfig: validation and dict round trip."""

import pytest

from oft_policy import names
from oft_policy.model import ConfigError, OFTConfig


def test_round_trip_and_resolved_image_size():
    config = OFTConfig(decoding="last_token_mlp", chunk_size=10)
    assert config.image_size == 56  # tiny backbone's native size
    again = OFTConfig.from_dict(config.to_dict())
    assert again == config
    assert again.joint_names == names.ALOHA_JOINT_NAMES and again.camera_names == names.CAMERA_NAMES
    assert config.lora_rank == 32 and config.freeze_vision and config.center_crop_scale == 0.9


def test_unknown_key_is_rejected_with_its_name():
    data = OFTConfig().to_dict()
    data["chunk_sise"] = 5
    with pytest.raises(ConfigError, match="chunk_sise"):
        OFTConfig.from_dict(data)


@pytest.mark.parametrize("kwargs, message", [
    ({"decoding": "diffusion"}, "decoding"),
    ({"action_dim": 7}, "joint_names"),
    ({"backbone": "openvla"}, "openvla_path"),
    ({"camera_names": ("a", "b", "c", "d")}, "camera"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"image_size": 50}, "multiple"),
])
def test_inconsistent_fields_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OFTConfig(**kwargs)
