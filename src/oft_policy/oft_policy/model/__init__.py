"""The OFT model: Prismatic VLA backbone (tiny or OpenVLA-7B) with parallel / last-token / autoregressive decoding.

Public API::

    OFTConfig, ConfigError            # model + robot-interface settings (from_dict/to_dict)
    build_model(config, device, dtype, seed) -> OFTModel
    build_tokenizer(config)           # tiny: created locally; openvla: from its directory
    preprocess_images(images, image_size, crop_scale, train, generator) -> [N, 6, S, S]
    tokenize_prompts(tokenizer, instructions, prompt_template) -> (input_ids, attention_mask)
    loss.chunk_regression_loss(pred, target, pad_mask, kind, huber_delta)
"""

from oft_policy.model.build import build_model, build_tokenizer
from oft_policy.model.config import ConfigError, OFTConfig
from oft_policy.model.loss import chunk_regression_loss
from oft_policy.model.oft import OFTModel
from oft_policy.model.preprocess import preprocess_images, tokenize_prompts

__all__ = [
    "ConfigError", "OFTConfig", "OFTModel", "build_model", "build_tokenizer",
    "chunk_regression_loss", "preprocess_images", "tokenize_prompts",
]
