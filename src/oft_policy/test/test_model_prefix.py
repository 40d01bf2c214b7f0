"""Prefix conditioning: the first rows' action slots carry the actions committed during an inference
delay, and the head continues from them. Tiny configurations, CPU, real torch steps."""

import numpy as np
import pytest
import torch

from oft_policy import names
from oft_policy.model import ConfigError, OFTConfig, build_model, build_tokenizer, preprocess_images, tokenize_prompts
from oft_policy.model.loss import chunk_regression_loss
from oft_policy.runtime import Chunk, PublishedChunks

CHUNK, DIM, PREFIX = 8, 7, 3


def tiny(max_prefix_steps=PREFIX):
    config = OFTConfig(camera_names=("cam_high",), joint_names=names.arm_joint_names("left"), action_dim=DIM,
                       chunk_size=CHUNK, max_prefix_steps=max_prefix_steps)
    return config, build_model(config, seed=0)


def inputs(config, batch):
    image = np.full((64, 64, 3), 128, np.uint8)
    pixels = torch.stack([preprocess_images([image], config.image_size, config.center_crop_scale)] * batch)
    ids, mask = tokenize_prompts(build_tokenizer(config), ["continue"] * batch, config.prompt_template)
    return pixels, ids, mask, torch.zeros(batch, DIM)


def test_config_bounds_and_old_configs():
    with pytest.raises(ConfigError, match="max_prefix_steps"):
        OFTConfig(chunk_size=4, max_prefix_steps=4)
    with pytest.raises(ConfigError, match="parallel decoding"):
        OFTConfig(decoding="last_token_mlp", max_prefix_steps=2)
    old = OFTConfig().to_dict()
    del old["max_prefix_steps"]  # a checkpoint written before prefix conditioning
    assert OFTConfig.from_dict(old).max_prefix_steps == 0


def test_only_counted_prefix_rows_change_the_chunk():
    config, model = tiny()
    model.eval()
    x = inputs(config, 2)
    prefix = torch.rand(2, PREFIX, DIM) * 2 - 1
    with torch.no_grad():
        plain = model(*x)
        none_counted = model(*x, prefix, torch.tensor([0, 0]))
        two = model(*x, prefix, torch.tensor([2, 2]))
        changed_third = prefix.clone()
        changed_third[:, 2] = -changed_third[:, 2]
        two_again = model(*x, changed_third, torch.tensor([2, 2]))
    assert torch.allclose(plain, none_counted)  # P = 0 is OFT's empty slots exactly
    assert not torch.allclose(plain, two, atol=1e-4)
    assert torch.allclose(two, two_again)  # a row past prefix_steps is not seen
    _, without = tiny(0)
    with pytest.raises(ValueError, match="no prefix conditioning"):
        without(*x, prefix, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="prefix must be"):
        model(*x, torch.zeros(2, PREFIX + 1, DIM), torch.tensor([1, 1]))


def test_head_learns_to_continue_the_committed_actions():
    """Identical observations, each sample's chunk offset by its own constant: only the committed rows
    tell the offset, so the rows after them are learnable only through the prefix slots."""
    torch.manual_seed(0)
    config, model = tiny()
    batch = 8
    x = inputs(config, batch)
    offsets = torch.linspace(-0.6, 0.6, batch)[:, None, None]
    targets = (offsets + 0.05 * torch.arange(CHUNK)[None, :, None]).expand(batch, CHUNK, DIM).contiguous()
    steps = torch.full((batch,), 2)
    rest = torch.zeros(batch, CHUNK, dtype=torch.bool)
    rest[:, :2] = True  # the loss covers the rows after the prefix
    blind = chunk_regression_loss(targets.mean(0, keepdim=True).expand_as(targets), targets, rest).item()
    assert blind > 0.3
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(300):
        loss = chunk_regression_loss(model(*x, targets[:, :PREFIX], steps), targets, rest)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.04:
            break
    model.eval()
    with torch.no_grad():
        final = chunk_regression_loss(model(*x, targets[:, :PREFIX], steps), targets, rest).item()
    assert final < 0.1, f"L1 {final:.3f} against {blind:.3f} without the prefix"


def test_published_chunks_tell_what_runs_during_the_delay():
    rows = lambda value: np.full((10, DIM), float(value)) + 0.001 * np.arange(10)[:, None]  # noqa: E731
    published = PublishedChunks()
    first = Chunk.from_rows(rows(0.1), names.arm_joint_names("left"), 1, 10.0, 10.02, 0.02)  # due 10.02..10.20
    second = Chunk.from_rows(rows(0.5), names.arm_joint_names("left"), 2, 10.1, 10.18, 0.02)  # takes over at 10.18
    published.add(first)
    published.add(second)
    committed = published.committed(stamp_s=10.12, period_s=0.02, count=4)  # due 10.14, 10.16, 10.18, 10.20
    assert committed.shape == (4, DIM)
    assert np.allclose(committed[:2, 0], [0.106, 0.107]) and np.allclose(committed[2:, 0], [0.5, 0.501])
    assert published.committed(stamp_s=10.4, period_s=0.02, count=3).shape == (0, DIM)  # nothing covers it
