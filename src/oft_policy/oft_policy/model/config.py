"""OFTConfig: everything needed to rebuild a policy, serialized with its checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from oft_policy import names

BACKBONES = ("tiny", "openvla")
DECODINGS = ("parallel", "last_token_mlp", "autoregressive")
FINETUNE_MODES = ("lora", "full")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
TINY_VISIONS = ("vit", "efficientnet_lite0")
DEFAULT_IMAGE_SIZE = {"tiny": 56, "openvla": 224}
MAX_CAMERAS = 3
DEFAULT_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"


class ConfigError(ValueError):
    """An OFTConfig field is unknown, missing or inconsistent."""


@dataclass
class OFTConfig:
    """Model, decoding and robot-interface settings of one OFT policy.

    ``image_size`` 0 means the backbone's native size (56 px tiny, 224 px
    OpenVLA). ``center_crop_scale`` is the image area kept by the training
    random crop; inference takes the same-area center crop, so the policy sees
    the same scale it was trained on.
    """

    backbone: str = "tiny"
    openvla_path: Optional[str] = None
    decoding: str = "parallel"
    chunk_size: int = 25
    action_dim: int = len(names.ALOHA_JOINT_NAMES)
    camera_names: tuple = names.CAMERA_NAMES
    joint_names: tuple = names.ALOHA_JOINT_NAMES
    control_period_s: float = 0.02
    use_proprio: bool = True
    use_film: bool = True
    image_size: int = 0
    center_crop_scale: float = 0.9
    finetune: str = "lora"
    lora_rank: int = 32
    lora_dropout: float = 0.0
    freeze_vision: bool = True
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    head_hidden_dim: int = 0  # 0: the LLM width (4096 on OpenVLA-7B, as openvla-oft)
    head_num_blocks: int = 2
    n_action_bins: int = 256
    prompt_template: str = DEFAULT_PROMPT
    # Tiny backbone dims (ignored for openvla, whose dims come from its config.json).
    tiny_llm_hidden: int = 64
    tiny_llm_layers: int = 2
    tiny_llm_heads: int = 2
    # Tiny backbone vision: "vit" (DINOv2+SigLIP-shaped towers, random weights: OpenVLA's code path) or
    # "efficientnet_lite0" (ImageNet-pretrained CNN stages: the CPU demo's policy sees where things are).
    tiny_vision: str = "vit"
    # Prefix conditioning (parallel decoding): the first P <= max_prefix_steps rows' action slots carry
    # actions already committed to the arm while this chunk is computed (its inference delay), so the
    # rest continues them. 0: OFT's empty slots only.
    max_prefix_steps: int = 0
    extra: dict = field(default_factory=dict)  # free-form notes (dataset name, training run ...)

    def __post_init__(self):
        self.camera_names = tuple(self.camera_names)
        self.joint_names = tuple(self.joint_names)
        if not self.image_size:
            self.image_size = DEFAULT_IMAGE_SIZE.get(self.backbone, 0)
        self.validate()

    def validate(self) -> None:
        def choice(name, allowed):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {allowed}")

        choice("backbone", BACKBONES)
        choice("decoding", DECODINGS)
        choice("finetune", FINETUNE_MODES)
        choice("attn_implementation", ATTN_IMPLEMENTATIONS)
        choice("tiny_vision", TINY_VISIONS)
        if self.backbone == "openvla" and self.tiny_vision != "vit":
            raise ConfigError(f"tiny_vision={self.tiny_vision!r} applies to the tiny backbone only")
        if self.backbone == "openvla" and not self.openvla_path:
            raise ConfigError("backbone 'openvla' needs openvla_path (a local copy of openvla/openvla-7b)")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.action_dim != len(self.joint_names):
            raise ConfigError(
                f"action_dim {self.action_dim} disagrees with {len(self.joint_names)} joint_names"
            )
        if not 1 <= len(self.camera_names) <= MAX_CAMERAS or len(set(self.camera_names)) != len(self.camera_names):
            raise ConfigError(f"need 1 to {MAX_CAMERAS} distinct camera names, got {self.camera_names}")
        if not 0.0 < self.center_crop_scale <= 1.0:
            raise ConfigError(f"center_crop_scale must be in (0, 1], got {self.center_crop_scale}")
        if self.control_period_s <= 0:
            raise ConfigError(f"control_period_s must be positive, got {self.control_period_s}")
        if self.image_size <= 0 or self.image_size % 14:
            raise ConfigError(f"image_size must be a positive multiple of the patch size 14, got {self.image_size}")
        if not 0 <= self.max_prefix_steps < self.chunk_size:
            raise ConfigError(f"max_prefix_steps must lie in [0, chunk_size), got {self.max_prefix_steps}")
        if self.max_prefix_steps and self.decoding != "parallel":
            raise ConfigError("max_prefix_steps needs parallel decoding (the prefix fills action slots)")
        if self.lora_rank < 1:
            raise ConfigError(f"lora_rank must be >= 1, got {self.lora_rank}")
        if "{instruction}" not in self.prompt_template:
            raise ConfigError("prompt_template must contain '{instruction}'")

    @property
    def num_cameras(self) -> int:
        return len(self.camera_names)

    @property
    def num_action_tokens(self) -> int:
        return self.chunk_size * self.action_dim

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["camera_names"] = list(self.camera_names)
        out["joint_names"] = list(self.joint_names)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "OFTConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"an OFT config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown OFT config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)
