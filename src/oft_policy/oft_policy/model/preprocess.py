"""Camera images -> pixel_values, instructions -> token ids, and the tiny local tokenizer.

pixel_values layout (one sample): float32 ``[num_cameras, 6, S, S]``; channels
0-2 are the image normalized for the DINOv2 tower (ImageNet mean/std),
channels 3-5 the same image normalized for the SigLIP tower (mean 0.5, std 0.5),
as Prismatic's fused backbone expects. A batch stacks samples to
``[B, num_cameras, 6, S, S]``.

Images are first resized to S x S (OpenVLA's "resize-naive"), then cropped to
``crop_scale`` of their area (random position and color jitter when training,
centered otherwise, as openvla-oft) and resized back to S x S.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from oft_policy.model.vit import SIGLIP_MEAN_STD, VIT_SPECS, DINOV2_ID

DINO_MEAN_STD = (VIT_SPECS[DINOV2_ID].image_mean, VIT_SPECS[DINOV2_ID].image_std)
TOWER_MEAN_STD = (DINO_MEAN_STD, SIGLIP_MEAN_STD)

# Color jitter ranges (openvla-oft's training augmentation, without hue).
BRIGHTNESS = 0.2
CONTRAST = (0.8, 1.2)
SATURATION = (0.8, 1.2)


def _as_float_image(image: np.ndarray) -> torch.Tensor:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"camera images must be uint8 HxWx3, got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def _uniform(generator: Optional[torch.Generator], low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


def _color_jitter(image: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    image = image * _uniform(generator, 1 - BRIGHTNESS, 1 + BRIGHTNESS)
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])
    image = (image - gray.mean()) * _uniform(generator, *CONTRAST) + gray.mean()
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    image = (image - gray) * _uniform(generator, *SATURATION) + gray
    return image.clamp_(0.0, 1.0)


def _crop(image: torch.Tensor, crop_scale: float, train: bool, generator: Optional[torch.Generator]) -> torch.Tensor:
    size = image.shape[-1]
    side = max(1, int(round(size * math.sqrt(crop_scale))))
    if side == size:
        return image
    if train:
        top = int(torch.randint(0, size - side + 1, (), generator=generator))
        left = int(torch.randint(0, size - side + 1, (), generator=generator))
    else:
        top = left = (size - side) // 2
    return image[:, top:top + side, left:left + side]


def preprocess_images(
    images: Sequence[np.ndarray],
    image_size: int,
    crop_scale: float = 0.9,
    train: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """One observation's camera images (uint8 HxWx3, any size, camera order) -> [N, 6, S, S] float32."""
    if len(images) == 0:
        raise ValueError("need at least one camera image")
    out = []
    for raw in images:
        image = _resize(_as_float_image(raw), image_size)
        image = _resize(_crop(image, crop_scale, train, generator), image_size)
        if train:
            image = _color_jitter(image, generator)
        towers = [
            (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
            for mean, std in TOWER_MEAN_STD
        ]
        out.append(torch.cat(towers, dim=0))
    return torch.stack(out)


# ---- text -----------------------------------------------------------------

TINY_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
TINY_PAD_TOKEN = "<PAD>"


def build_tiny_tokenizer(n_action_bins: int = 256):
    """A byte-level tokenizer created locally: 3 specials, 256 bytes, ``n_action_bins`` action ids, then <PAD>.

    The action ids are the last ids of the base vocabulary and <PAD> comes
    right after them, the same arrangement as OpenVLA's Llama tokenizer
    (32000 base ids, the last 256 used for actions, pad = 32000).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(TINY_SPECIAL_TOKENS)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    for index in range(n_action_bins):
        vocab[f"<act_{index}>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    )
    tokenizer.add_special_tokens({"pad_token": TINY_PAD_TOKEN})
    return tokenizer


def tokenize_prompts(tokenizer, instructions: Sequence[str], prompt_template: str):
    """Instructions -> (input_ids [B, L] int64, attention_mask [B, L] int64), BOS first, right-padded.

    The instruction is lower-cased and stripped of a trailing period, as OpenVLA's prompt builder does.
    """
    if isinstance(instructions, str):
        instructions = [instructions]
    rows = []
    for instruction in instructions:
        text = prompt_template.format(instruction=instruction.strip().rstrip(".").lower())
        rows.append([tokenizer.bos_token_id] + tokenizer.encode(text, add_special_tokens=False))
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(row)
        attention_mask[index, : len(row)] = 1
    return input_ids, attention_mask
