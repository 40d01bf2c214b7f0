"""The `openvla` loader on a reduced-size model written in OpenVLA-7B's published on-disk layout."""

import json

import numpy as np
import pytest
import torch

from oft_policy import names
from oft_policy.checkpoint import load_policy, save_checkpoint
from oft_policy.testing.checkpoints import random_stats
from oft_policy.model import OFTConfig, build_model, build_tokenizer
from oft_policy.model.openvla import HUB_REPO, OpenVLALoadError, write_openvla_layout
from oft_policy.model.vit import TINY_DINOV2_ID, TINY_SIGLIP_ID

PUBLISHED_PREFIXES = ("vision_backbone.featurizer.", "vision_backbone.fused_featurizer.", "projector.fc",
                      "language_model.model.", "language_model.lm_head.")


@pytest.fixture(scope="module")
def published_dir(tmp_path_factory, tiny_tokenizer):
    """Random tiny-dims weights saved under OpenVLA's names, config fields and tokenizer files."""
    source = build_model(OFTConfig(finetune="full", use_film=False, use_proprio=False), seed=1)
    out = write_openvla_layout(source, tiny_tokenizer, tmp_path_factory.mktemp("hub") / "openvla-7b",
                               (TINY_DINOV2_ID, TINY_SIGLIP_ID), shards=2)
    return out, source.state_dict()


def test_published_layout_loads_by_name_and_predicts(published_dir, tmp_path, make_images):
    path, source_state = published_dir
    index = json.loads((path / "model.safetensors.index.json").read_text())
    keys = set(index["weight_map"])
    assert all(key.startswith(PUBLISHED_PREFIXES) for key in keys)
    assert "vision_backbone.featurizer.blocks.0.ls1.scale_factor" in keys  # Prismatic's LayerScale name
    assert "vision_backbone.featurizer.reg_token" in keys
    assert "vision_backbone.fused_featurizer.attn_pool.latent" in keys
    assert {"projector.fc1.weight", "projector.fc3.bias", "language_model.lm_head.weight"} <= keys
    config_json = json.loads((path / "config.json").read_text())
    assert config_json["arch_specifier"] == "no-align+fused-gelu-mlp" and config_json["model_type"] == "openvla"

    config = OFTConfig(backbone="openvla", openvla_path=str(path), image_size=56, chunk_size=5)
    model = build_model(config, seed=5)
    loaded = model.state_dict()
    for key in keys:  # every published tensor landed in the model (LoRA wraps the Linear as base_layer)
        wrapped = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        target = key if key in loaded else wrapped
        assert torch.equal(loaded[target], source_state[key]), key

    checkpoint = save_checkpoint(tmp_path / "finetuned", model, config, random_stats(config.joint_names),
                                 build_tokenizer(config))
    from safetensors import safe_open
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as handle:
        saved = set(handle.keys())
    # Only the fine-tuned part travels (LoRA, FiLM, heads and the trained projector); the base stays in place.
    assert {key for key in keys if key in saved} == {key for key in keys if key.startswith("projector.")}
    assert any("lora_A" in key for key in saved)
    assert not any(key.startswith("language_model.model.embed") for key in saved)
    policy = load_policy(checkpoint)
    images = dict(zip(names.CAMERA_NAMES, make_images(3, seed=2)))
    chunk = policy.predict(images, "fold the towel", np.zeros(14))
    assert chunk.shape == (5, 14) and np.all(np.isfinite(chunk))
    assert np.array_equal(chunk, load_policy(checkpoint).predict(images, "fold the towel", np.zeros(14)))


def test_missing_directory_names_what_to_download(tmp_path):
    config = OFTConfig(backbone="openvla", openvla_path=str(tmp_path / "openvla-7b"))
    with pytest.raises(OpenVLALoadError) as error:
        build_model(config)
    assert HUB_REPO in str(error.value) and str(tmp_path / "openvla-7b") in str(error.value)


def test_incomplete_or_mismatched_weights_are_refused(published_dir, tmp_path):
    import shutil

    path, _ = published_dir
    partial = shutil.copytree(path, tmp_path / "partial")
    (partial / "model-00002-of-00002.safetensors").unlink()
    config = OFTConfig(backbone="openvla", openvla_path=str(partial), image_size=56)
    with pytest.raises(OpenVLALoadError, match="model-00002-of-00002.safetensors"):
        build_model(config)

    wrong = shutil.copytree(path, tmp_path / "wrong")
    published = json.loads((wrong / "config.json").read_text())
    published["text_config"]["hidden_size"] = 32  # weights were written at 64
    (wrong / "config.json").write_text(json.dumps(published))
    with pytest.raises(OpenVLALoadError, match="shape mismatches"):
        build_model(OFTConfig(backbone="openvla", openvla_path=str(wrong), image_size=56))


def test_published_dims_give_openvla_7b_size(tmp_path):
    """Built on the meta device (no memory): the published config yields OpenVLA-7B's 7.54B parameters."""
    from oft_policy.model.openvla import is_oft_addition, published_config_dict

    (tmp_path / "config.json").write_text(json.dumps(published_config_dict()))
    config = OFTConfig(backbone="openvla", openvla_path=str(tmp_path), finetune="full")
    model = build_model(config, device="meta", load_base_weights=False)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters() if not is_oft_addition(name)}
    assert round(sum(int(np.prod(s)) for s in shapes.values()) / 1e9, 2) == 7.54  # the model card's size
    assert shapes["vision_backbone.featurizer.reg_token"] == (1, 4, 1024)
    assert shapes["vision_backbone.featurizer.pos_embed"] == (1, 256, 1024)  # 224 px / 14 = 16 x 16 patches
    assert shapes["vision_backbone.fused_featurizer.pos_embed"] == (1, 256, 1152)
    assert shapes["projector.fc1.weight"] == (4 * 2176, 2176)  # DINOv2 1024 + SigLIP 1152 channels
    assert shapes["language_model.model.embed_tokens.weight"] == (32064, 4096)
    assert model.action_bins.first_id == 32000 - 256
    assert model.action_head.fc1.in_features == 14 * 4096 and model.action_head.fc1.out_features == 4096
