"""Load OpenVLA-7B from a local copy of its published Hugging Face repository, without its code files.

The directory must hold what the hub repository ``openvla/openvla-7b`` ships:
``config.json`` (Prismatic/OpenVLA fields), the safetensors weights (sharded
with ``model.safetensors.index.json``, or a single ``model.safetensors``) and
the tokenizer files. Architecture comes from this package
(:mod:`oft_policy.model.vit`, :mod:`oft_policy.model.oft`, transformers' Llama);
weights load by their published names. Nothing is downloaded and no remote code runs.

:func:`write_openvla_layout` writes a model in the same layout (used to test
this loader with a reduced-size model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from oft_policy.model.vit import DINOV2_ID, SIGLIP_ID, VIT_SPECS

HUB_REPO = "openvla/openvla-7b"
CONFIG_FILE = "config.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
FUSED_ARCH = "no-align+fused-gelu-mlp"
# Fields of the published config.json this loader reads.
REQUIRED_FIELDS = ("model_type", "timm_model_ids", "image_sizes", "use_fused_vision_backbone",
                   "arch_specifier", "text_config", "pad_token_id", "n_action_bins")


class OpenVLALoadError(RuntimeError):
    """The OpenVLA directory is missing, incomplete or not the published fused DINO+SigLIP Llama model."""


def _missing(path: Path, what: str) -> OpenVLALoadError:
    return OpenVLALoadError(
        f"OpenVLA checkpoint at {path} is missing or incomplete ({what}). Download the Hugging Face model "
        f"repository {HUB_REPO} (config.json, model.safetensors.index.json with all model-*.safetensors "
        f"shards, tokenizer files) into that directory, e.g. "
        f"`huggingface-cli download {HUB_REPO} --local-dir {path}`, and set openvla_path to it."
    )


@dataclass(frozen=True)
class PublishedConfig:
    text_config: object  # transformers.LlamaConfig
    timm_model_ids: tuple
    image_size: int
    action_vocab_end: int
    n_action_bins: int
    raw: dict


def read_published_config(path) -> PublishedConfig:
    path = Path(path)
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise _missing(path, f"no {CONFIG_FILE}")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise OpenVLALoadError(f"{config_file} is not valid JSON: {exc}") from exc
    absent = [key for key in REQUIRED_FIELDS if key not in raw]
    if absent:
        raise OpenVLALoadError(f"{config_file} lacks the published OpenVLA fields {absent}")
    if raw["model_type"] != "openvla" or not raw["use_fused_vision_backbone"] or raw["arch_specifier"] != FUSED_ARCH:
        raise OpenVLALoadError(
            f"{config_file} is not the fused DINOv2+SigLIP OpenVLA model (model_type={raw['model_type']!r}, "
            f"arch_specifier={raw['arch_specifier']!r}); only {HUB_REPO}'s architecture is supported"
        )
    timm_ids = tuple(raw["timm_model_ids"])
    unknown = [tid for tid in timm_ids if tid not in VIT_SPECS]
    if len(timm_ids) != 2 or unknown:
        raise OpenVLALoadError(f"unsupported vision towers {timm_ids}; supported: {sorted(VIT_SPECS)}")
    sizes = set(raw["image_sizes"])
    if len(sizes) != 1:
        raise OpenVLALoadError(f"both vision towers must share one image size, got {raw['image_sizes']}")
    from transformers import LlamaConfig

    text_fields = {k: v for k, v in dict(raw["text_config"]).items() if k not in ("model_type", "torch_dtype", "dtype")}
    if text_fields.get("model_type", "llama") != "llama":
        raise OpenVLALoadError("only a Llama language model is supported")
    return PublishedConfig(
        text_config=LlamaConfig(**text_fields),
        timm_model_ids=timm_ids,
        image_size=int(sizes.pop()),
        action_vocab_end=int(raw["pad_token_id"]),
        n_action_bins=int(raw["n_action_bins"]),
        raw=raw,
    )


def weight_files(path) -> list:
    """The safetensors files of the checkpoint, checked to exist."""
    path = Path(path)
    index = path / INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise OpenVLALoadError(f"{index} is malformed: {exc}") from exc
        absent = [name for name in shards if not (path / name).is_file()]
        if absent:
            raise _missing(path, f"weight shards not found: {absent}")
        return [path / name for name in shards]
    if (path / SINGLE_WEIGHTS_FILE).is_file():
        return [path / SINGLE_WEIGHTS_FILE]
    raise _missing(path, f"no {INDEX_FILE} or {SINGLE_WEIGHTS_FILE}")


def is_oft_addition(name: str) -> bool:
    """Parameters OFT adds on top of OpenVLA (absent from the published weights)."""
    from oft_policy.model.oft import OFT_MODULE_PREFIXES

    return name.startswith(OFT_MODULE_PREFIXES) or ".film_" in name or "lora_" in name


def load_published_weights(model, path) -> None:
    """Copy every published tensor into ``model`` by name; any mismatch is an error before returning."""
    from safetensors import safe_open

    files = weight_files(path)
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    seen, unexpected, wrong_shape = set(), [], []
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                target = params.get(key)
                if target is None:
                    unexpected.append(key)
                    continue
                tensor = handle.get_tensor(key)
                if tuple(tensor.shape) != tuple(target.shape):
                    wrong_shape.append(f"{key}: file {tuple(tensor.shape)} vs model {tuple(target.shape)}")
                    continue
                with torch.no_grad():
                    target.copy_(tensor.to(dtype=target.dtype, device=target.device))
                seen.add(key)
    missing = sorted(name for name in params if name not in seen and not is_oft_addition(name)
                     and "rotary_emb" not in name)
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensors absent from the files (first: {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (first: {unexpected[:5]})")
    if wrong_shape:
        problems.append(f"shape mismatches: {wrong_shape[:5]}")
    if problems:
        raise OpenVLALoadError(f"weights in {path} do not match the OpenVLA architecture: " + "; ".join(problems))


def load_tokenizer(path):
    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise _missing(path, f"no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token_id is None:
        raise OpenVLALoadError(f"the tokenizer in {path} has no pad token (OpenVLA's is <PAD>)")
    return tokenizer


def published_config_dict(image_size: int = 224, timm_model_ids=(DINOV2_ID, SIGLIP_ID), n_action_bins: int = 256,
                          pad_token_id: int = 32000, text_config: Optional[dict] = None) -> dict:
    """The fields of OpenVLA-7B's published config.json (defaults: the published values).

    Its ``text_config`` names only the vocabulary and pad id; every other Llama
    dimension is transformers' LlamaConfig default, which is Llama-2-7B.
    """
    return {
        "arch_specifier": FUSED_ARCH,
        "architectures": ["OpenVLAForActionPrediction"],
        "hf_llm_id": "meta-llama/Llama-2-7b-hf",
        "image_resize_strategy": "resize-naive",
        "image_sizes": [image_size, image_size],
        "llm_backbone_id": "llama2-7b-pure",
        "llm_max_length": 2048,
        "model_type": "openvla",
        "n_action_bins": n_action_bins,
        "norm_stats": {},
        "output_projector_states": False,
        "pad_to_multiple_of": 64,
        "pad_token_id": pad_token_id,
        "text_config": {"model_type": "llama", "pad_token_id": pad_token_id, "torch_dtype": "bfloat16",
                        "vocab_size": 32064, **(text_config or {})},
        "timm_model_ids": list(timm_model_ids),
        "timm_override_act_layers": [None, None],
        "torch_dtype": "bfloat16",
        "use_fused_vision_backbone": True,
        "vision_backbone_id": "dinosiglip-vit-so-224px",
    }


def write_openvla_layout(model, tokenizer, out_dir, timm_model_ids, shards: int = 2) -> Path:
    """Write ``model``'s base weights (no OFT additions) in OpenVLA's published layout.

    config.json with the published field names, sharded safetensors with an
    index, and the tokenizer files. Used to exercise :func:`load_published_weights`
    on a reduced-size model.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if not is_oft_addition(k) and "rotary_emb" not in k}
    names = sorted(state)
    weight_map = {}
    per_shard = -(-len(names) // shards)
    for index in range(shards):
        filename = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        chunk = {name: state[name] for name in names[index * per_shard:(index + 1) * per_shard]}
        save_file(chunk, str(out_dir / filename), metadata={"format": "pt"})
        weight_map.update({name: filename for name in chunk})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2))
    text_config = model.language_model.config
    config = published_config_dict(
        image_size=model.config.image_size, timm_model_ids=timm_model_ids,
        n_action_bins=model.action_bins.n_bins, pad_token_id=model.action_bins.vocab_end,
        text_config={
            "vocab_size": text_config.vocab_size,
            "hidden_size": text_config.hidden_size,
            "intermediate_size": text_config.intermediate_size,
            "num_hidden_layers": text_config.num_hidden_layers,
            "num_attention_heads": text_config.num_attention_heads,
            "num_key_value_heads": text_config.num_key_value_heads,
        },
    )
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
