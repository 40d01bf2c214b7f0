"""Shared fixtures for the oft_policy model tests: one CPU thread, tiny inputs, one tiny checkpoint."""

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def camera_images(count: int, seed: int = 0, shape=(60, 80, 3)) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def model_inputs(config, tokenizer, instructions=("pick up the cube",), seed: int = 0):
    """(pixel_values, input_ids, attention_mask, proprio) for a batch of len(instructions)."""
    from oft_policy.model import preprocess_images, tokenize_prompts

    batch = len(instructions)
    pixel_values = torch.stack([
        preprocess_images(camera_images(config.num_cameras, seed + i), config.image_size, config.center_crop_scale)
        for i in range(batch)
    ])
    input_ids, attention_mask = tokenize_prompts(tokenizer, list(instructions), config.prompt_template)
    proprio = torch.from_numpy(np.random.default_rng(seed).normal(size=(batch, config.action_dim)).astype(np.float32))
    return pixel_values, input_ids, attention_mask, proprio


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from oft_policy.model import OFTConfig, build_tokenizer

    return build_tokenizer(OFTConfig())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny ALOHA checkpoint (3 cameras, 14 dims, chunk 25), built once per session."""
    from oft_policy.testing.checkpoints import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint", seed=0)


@pytest.fixture(scope="session")
def make_inputs():
    """The :func:`model_inputs` helper (importlib import mode: tests reach helpers through fixtures)."""
    return model_inputs


@pytest.fixture(scope="session")
def make_images():
    return camera_images
