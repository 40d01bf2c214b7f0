"""Image preprocessing (crop, jitter, two tower normalizations) and the tiny tokenizer's id layout."""

import numpy as np
import pytest
import torch

from oft_policy.model import OFTConfig, build_model, preprocess_images, tokenize_prompts


def test_eval_is_a_deterministic_center_crop_and_both_towers_see_it():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = preprocess_images([image, image], image_size=56, crop_scale=0.9)
    assert out.shape == (2, 6, 56, 56) and out.dtype == torch.float32
    assert torch.equal(out, preprocess_images([image, image], image_size=56, crop_scale=0.9))
    # Channels 0-2 (ImageNet mean/std) and 3-5 (mean 0.5, std 0.5) encode the same pixels.
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    dino = out[0, :3] * std + mean
    siglip = out[0, 3:] * 0.5 + 0.5
    torch.testing.assert_close(dino, siglip, atol=1e-5, rtol=0)
    uncropped = preprocess_images([image], image_size=56, crop_scale=1.0)
    assert not torch.equal(out[:1], uncropped)  # the 90 % area crop is applied


def test_center_crop_keeps_the_middle():
    image = np.zeros((56, 56, 3), np.uint8)
    image[:3] = 255  # a bright border strip that a 90 % area center crop (53 px) mostly removes
    cropped = preprocess_images([image], image_size=56, crop_scale=0.9)[0, 3:] * 0.5 + 0.5
    full = preprocess_images([image], image_size=56, crop_scale=1.0)[0, 3:] * 0.5 + 0.5
    assert cropped.mean() < full.mean()


def test_training_augmentation_is_random_but_seeded():
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def draw(seed):
        return preprocess_images([image], 56, 0.9, train=True, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    assert not torch.equal(draw(3), preprocess_images([image], 56, 0.9))


def test_rejects_non_uint8_images():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images([np.zeros((8, 8, 3), np.float32)], 56)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images([np.zeros((8, 8), np.uint8)], 56)


def test_tiny_tokenizer_matches_openvla_id_layout(tiny_tokenizer):
    config = OFTConfig()
    model = build_model(config, seed=0)
    bins = model.action_bins
    assert tiny_tokenizer.pad_token_id == bins.vocab_end  # pad right after the action ids, as OpenVLA (32000)
    assert tiny_tokenizer.vocab_size == bins.vocab_end and bins.first_id == bins.vocab_end - 256
    assert model.language_model.config.vocab_size % 64 == 0
    ids, mask = tokenize_prompts(tiny_tokenizer, ["Pick up the cube.", "go"], config.prompt_template)
    assert ids[0, 0] == ids[1, 0] == tiny_tokenizer.bos_token_id
    text = tiny_tokenizer.decode(ids[0, 1:][mask[0, 1:].bool()])
    assert text == "In: What action should the robot take to pick up the cube?\nOut:"
    assert int(mask[1].sum()) < ids.shape[1] and torch.all(ids[1][~mask[1].bool()] == tiny_tokenizer.pad_token_id)
    assert int(ids[mask.bool()].max()) < bins.first_id  # text never lands on action ids
