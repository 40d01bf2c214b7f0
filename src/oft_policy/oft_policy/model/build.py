"""build_model: one constructor for the tiny and the OpenVLA-7B backbone."""

from __future__ import annotations

from typing import Optional

import torch

from oft_policy.model.config import OFTConfig
from oft_policy.model.efficientnet import EfficientNetVisionBackbone
from oft_policy.model.oft import OFTModel, default_dtype
from oft_policy.model.preprocess import TINY_SPECIAL_TOKENS, build_tiny_tokenizer
from oft_policy.model.vit import TINY_DINOV2_ID, TINY_SIGLIP_ID

TINY_BYTE_TOKENS = 256
VOCAB_MULTIPLE = 64  # Prismatic pads the embedding matrix to a multiple of 64 (32064 on OpenVLA-7B)


def tiny_text_config(config: OFTConfig):
    """Llama config of the tiny backbone: tokenizer ids as :func:`build_tiny_tokenizer` lays them out."""
    from transformers import LlamaConfig

    pad_id = len(TINY_SPECIAL_TOKENS) + TINY_BYTE_TOKENS + config.n_action_bins
    vocab = -(-(pad_id + 1) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=config.tiny_llm_hidden,
        intermediate_size=2 * config.tiny_llm_hidden,
        num_hidden_layers=config.tiny_llm_layers,
        num_attention_heads=config.tiny_llm_heads,
        num_key_value_heads=config.tiny_llm_heads,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
    )


def resolve_dtype(device, dtype: Optional[torch.dtype]) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU unless told otherwise."""
    if dtype is not None:
        return dtype
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def build_model(config: OFTConfig, device="cpu", dtype: Optional[torch.dtype] = None,
                seed: Optional[int] = None, load_base_weights: bool = True) -> OFTModel:
    """Build the model for ``config`` with fine-tuning settings applied.

    ``tiny``: random weights (``seed`` makes them reproducible), but the ImageNet weights for the
    ``efficientnet_lite0`` vision option when ``load_base_weights``. ``openvla``:
    the published weights from ``config.openvla_path`` are loaded by name
    (set ``load_base_weights=False`` for a 7B-sized random model, e.g. for timing).
    """
    dtype = resolve_dtype(device, dtype)
    if seed is not None:
        torch.manual_seed(seed)
    if config.backbone == "tiny":
        text_config, timm_ids = tiny_text_config(config), (TINY_DINOV2_ID, TINY_SIGLIP_ID)
        action_vocab_end = text_config.pad_token_id
    else:
        from oft_policy.model import openvla

        published = openvla.read_published_config(config.openvla_path)
        text_config, timm_ids = published.text_config, published.timm_model_ids
        action_vocab_end = published.action_vocab_end
        if config.image_size != published.image_size:
            raise ValueError(
                f"config image_size {config.image_size} differs from the OpenVLA checkpoint's {published.image_size}"
            )
    with torch.device(device), default_dtype(dtype):
        model = OFTModel(config, text_config, timm_ids, action_vocab_end)
    if config.backbone == "openvla" and load_base_weights:
        from oft_policy.model import openvla

        openvla.load_published_weights(model, config.openvla_path)
    if isinstance(model.vision_backbone, EfficientNetVisionBackbone) and load_base_weights:
        model.vision_backbone.featurizer.load_imagenet_weights()
    model.apply_finetune_settings()
    return model


def build_tokenizer(config: OFTConfig):
    """The tokenizer that belongs to the backbone (tiny: created locally; openvla: from its directory)."""
    if config.backbone == "tiny":
        return build_tiny_tokenizer(config.n_action_bins)
    from oft_policy.model import openvla

    return openvla.load_tokenizer(config.openvla_path)
