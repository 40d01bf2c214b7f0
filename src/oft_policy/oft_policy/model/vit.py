"""Vision transformers with timm's parameter names, as Prismatic builds them.

OpenVLA's published weights store its two vision towers under timm's
VisionTransformer names (``patch_embed.proj``, ``blocks.N.attn.qkv``,
``blocks.N.ls1.scale_factor`` ...). Neither timm nor its models are
dependencies here, so this module re-implements the two architectures the
checkpoint needs, keyed by the timm model id recorded in its config.json:

- DINOv2 ViT-L/14 with 4 register tokens and LayerScale
  (``vit_large_patch14_reg4_dinov2.lvd142m``); position embeddings cover the
  patches only, the class and register tokens are prepended after adding them.
- SigLIP so400m/14 at 224 px (``vit_so400m_patch14_siglip_224``): no class
  token, tanh-GELU, and a MAP attention-pool head whose parameters exist in the
  checkpoint although Prismatic never runs it.

Prismatic takes the patch features (no prefix tokens, no final norm) after the
second-to-last block, so :meth:`VisionTransformer.patch_features` stops there.
LayerScale's parameter is called ``scale_factor`` (Prismatic renames timm's
``gamma`` because Hugging Face loading mangles names containing ``gamma``).

FiLM (openvla-oft): when a block is built with ``film_dim``, the mean language
embedding drives a per-channel scale and shift applied after the attention
residual. Both projections start at zero so a pretrained tower is unchanged
until fine-tuning moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTSpec:
    """Shape of one vision tower; the published towers and the tiny ones share the classes."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    patch_size: int = 14
    class_token: bool = True
    reg_tokens: int = 0
    layer_scale: bool = False
    map_head: bool = False
    act: str = "gelu"  # "gelu" (DINOv2) or "gelu_tanh" (SigLIP)
    norm_eps: float = 1e-6
    # ImageNet statistics for DINOv2, 0.5/0.5 for SigLIP.
    image_mean: tuple = (0.485, 0.456, 0.406)
    image_std: tuple = (0.229, 0.224, 0.225)


SIGLIP_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

DINOV2_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_ID = "vit_so400m_patch14_siglip_224"
TINY_DINOV2_ID = "oft_tiny_patch14_reg4_dinov2"
TINY_SIGLIP_ID = "oft_tiny_patch14_siglip"

VIT_SPECS = {
    DINOV2_ID: ViTSpec(embed_dim=1024, depth=24, num_heads=16, mlp_hidden=4096, reg_tokens=4, layer_scale=True),
    SIGLIP_ID: ViTSpec(
        embed_dim=1152, depth=27, num_heads=16, mlp_hidden=4304, class_token=False, map_head=True,
        act="gelu_tanh", image_mean=SIGLIP_MEAN_STD[0], image_std=SIGLIP_MEAN_STD[1],
    ),
    # Same architectures at tiny width/depth: the CPU test and demo backbone.
    TINY_DINOV2_ID: ViTSpec(embed_dim=32, depth=2, num_heads=2, mlp_hidden=64, reg_tokens=4, layer_scale=True),
    TINY_SIGLIP_ID: ViTSpec(
        embed_dim=48, depth=2, num_heads=2, mlp_hidden=96, class_token=False, map_head=True,
        act="gelu_tanh", image_mean=SIGLIP_MEAN_STD[0], image_std=SIGLIP_MEAN_STD[1],
    ),
}


def vit_spec(timm_model_id: str) -> ViTSpec:
    try:
        return VIT_SPECS[timm_model_id]
    except KeyError:
        raise ValueError(
            f"unsupported vision tower {timm_model_id!r}; supported: {sorted(VIT_SPECS)}"
        ) from None


def _activation(name: str) -> nn.Module:
    return nn.GELU(approximate="tanh") if name == "gelu_tanh" else nn.GELU()


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = _activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.scale_factor = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Block(nn.Module):
    def __init__(self, spec: ViTSpec, film_dim: Optional[int] = None):
        super().__init__()
        dim = spec.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.attn = Attention(dim, spec.num_heads)
        self.ls1 = LayerScale(dim) if spec.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.mlp = Mlp(dim, spec.mlp_hidden, spec.act)
        self.ls2 = LayerScale(dim) if spec.layer_scale else nn.Identity()
        if film_dim is not None:
            self.film_scale = nn.Linear(film_dim, dim)
            self.film_shift = nn.Linear(film_dim, dim)
            for layer in (self.film_scale, self.film_shift):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        else:
            self.film_scale = self.film_shift = None

    def forward(self, x: torch.Tensor, language: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        if self.film_scale is not None:
            if language is None:
                raise ValueError("this vision tower was built with FiLM and needs the language embedding")
            x = x * (1.0 + self.film_scale(language).unsqueeze(1)) + self.film_shift(language).unsqueeze(1)
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPoolLatent(nn.Module):
    """SigLIP's MAP head (timm names). Kept for weight compatibility; Prismatic does not run it."""

    def __init__(self, spec: ViTSpec):
        super().__init__()
        dim = spec.embed_dim
        self.num_heads = spec.num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.mlp = Mlp(dim, spec.mlp_hidden, spec.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        q = self.q(self.latent.expand(batch, -1, -1)).reshape(batch, 1, self.num_heads, head_dim).transpose(1, 2)
        kv = self.kv(x).reshape(batch, tokens, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1]).transpose(1, 2).reshape(batch, 1, dim)
        out = self.proj(out)
        out = out + self.mlp(self.norm(out))
        return out[:, 0]


class VisionTransformer(nn.Module):
    """timm-named ViT; :meth:`patch_features` is what Prismatic feeds the projector."""

    def __init__(self, spec: ViTSpec, image_size: int, film_dim: Optional[int] = None):
        super().__init__()
        if image_size % spec.patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {spec.patch_size}")
        self.spec = spec
        self.num_patches = (image_size // spec.patch_size) ** 2
        dim = spec.embed_dim
        self.patch_embed = PatchEmbed(spec.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if spec.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, spec.reg_tokens, dim)) if spec.reg_tokens else None
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_patches, dim) * 0.02)
        # Prismatic stops after the second-to-last block; the last one (and norm, attn_pool) exist for the
        # weight names only, so they get no FiLM and are never trained.
        self.num_run_blocks = max(spec.depth - 1, 1)
        self.blocks = nn.ModuleList(
            Block(spec, film_dim if index < self.num_run_blocks else None) for index in range(spec.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.attn_pool = AttentionPoolLatent(spec) if spec.map_head else None
        self.num_prefix_tokens = int(spec.class_token) + spec.reg_tokens
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for param in (self.cls_token, self.reg_token):
            if param is not None:
                nn.init.normal_(param, std=1e-6)
        for block in self.blocks:  # FiLM starts as the identity
            if block.film_scale is not None:
                for layer in (block.film_scale, block.film_shift):
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def unused_parameter_prefixes(self) -> tuple:
        """Parameter name prefixes that :meth:`patch_features` never touches."""
        unused = tuple(f"blocks.{i}." for i in range(self.num_run_blocks, self.spec.depth))
        return unused + ("norm.",) + (("attn_pool.",) if self.attn_pool is not None else ())

    def patch_features(self, images: torch.Tensor, language: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 3, S, S] normalized images -> [B, num_patches, embed_dim] after the second-to-last block."""
        x = self.patch_embed(images) + self.pos_embed
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        x = torch.cat(prefix + [x], dim=1)
        for block in self.blocks[: self.num_run_blocks]:
            x = block(x, language)
        return x[:, self.num_prefix_tokens:]
