"""The training configuration: YAML sections model, training, loss, data, optimizer, ddp.

Every key has a default here (the model section's are OFTConfig's); a YAML file and
``section.key=value`` overrides replace them. An unknown section or key is an error that names
the known ones, and a renamed key names its new name.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Iterable, Optional

import yaml

SECTIONS = {
    # The model section is the policy's OFTConfig (oft_policy.model.config): the same keys, defaults and checks,
    # except what the dataset gives (joint names, control period) and camera_names null: the dataset's cameras.
    "model": {},  # filled from OFTConfig below
    "training": {
        "output_dir": "runs/oft_aloha",
        "max_steps": 10000,
        "batch_size": 8,                 # per process, per micro-step
        "grad_accumulation": 1,
        "checkpoint_every": 1000,
        "validate_every": 500,
        "log_every": 10,
        "seed": 0,
        "device": "auto",                # auto | cpu | cuda
        "bf16": True,                    # autocast on GPU only
        "augment": True,                 # random crop + color jitter (openvla-oft)
        "proprio_noise_std": 0.0,        # with augment: Gaussian noise on the normalized proprio
        "logger": "tensorboard",         # tensorboard | wandb | none
        "wandb_project": "oft_ros",
        "threads": 0,                    # torch CPU threads per process (0: torch default)
        "init_from": None,               # a checkpoint directory whose weights start the run (same architecture)
        "load_base_weights": True,       # false: 7B-sized random weights (memory/speed benchmarks only)
    },
    "loss": {"kind": "l1", "huber_delta": 1.0},
    "data": {
        "dataset": None,                 # LeRobotDataset v3.0 directory (export output)
        "val_episodes": 1,               # last N episodes held out for validation (0: validate on training data)
        "stats_path": None,              # fit_normalizer output; default: fitted on the training episodes
        "action_scheme": "min_max",      # min_max | q01_q99 (when fitting here)
        "cache_bytes": 2 << 30,          # decoded frames kept in memory
        "max_val_samples": 256,
    },
    "optimizer": {
        "lr": 5e-4,
        "min_lr": 1e-6,
        "weight_decay": 0.01,
        "betas": [0.9, 0.999],
        "warmup_steps": 100,
        "first_cycle_steps": 0,          # >0: cosine ends here first, then restarts toward max_steps (trainer.lr_at)
        "max_grad_norm": 1.0,
    },
    "ddp": {
        "nproc_per_node": 1,
        "backend": "auto",               # auto: nccl on GPU, gloo on CPU
        "find_unused_parameters": False,
        "gradient_as_bucket_view": True,
    },
}
_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
DATASET_FIELDS = ("joint_names", "control_period_s", "extra")
"""OFTConfig fields a run takes from its dataset (names, fps) and notes itself, not from the model section."""

TRAINABLE_DECODINGS = ("parallel", "last_token_mlp")  # what chunk_regression_loss trains
RENAMED = {
    "model.action_head": "model.decoding (parallel for l1_regression, or last_token_mlp)",
    "model.freeze_vision_backbone": "model.freeze_vision",
    "model.cameras": "model.camera_names",
    "model.load_base_weights": "training.load_base_weights",
}


class TrainConfigError(ValueError):
    """The training configuration has an unknown key or an invalid value."""


def _merge(base: dict, update: dict, origin: str) -> None:
    if not isinstance(update, dict):
        raise TrainConfigError(f"{origin}: the config must be a mapping of sections, got {type(update).__name__}")
    for section, values in update.items():
        if section not in SECTIONS:
            raise TrainConfigError(f"{origin}: unknown section {section!r}; known sections: {', '.join(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise TrainConfigError(f"{origin}: section {section!r} must be a mapping")
        for key, value in values.items():
            if f"{section}.{key}" in RENAMED:
                raise TrainConfigError(f"{origin}: {section}.{key} is now {RENAMED[f'{section}.{key}']}")
            if key not in SECTIONS[section]:
                raise TrainConfigError(
                    f"{origin}: unknown key {section}.{key}; known keys of {section}: {', '.join(SECTIONS[section])}"
                )
            base[section][key] = value


def model_section_defaults() -> dict:
    """OFTConfig's fields and defaults, less DATASET_FIELDS; camera_names None (the dataset's cameras)."""
    import dataclasses

    from oft_policy.model.config import OFTConfig

    defaults = {field.name: field.default for field in dataclasses.fields(OFTConfig) if field.name not in DATASET_FIELDS}
    defaults["camera_names"] = None
    return defaults


SECTIONS["model"] = model_section_defaults()


def model_config_error(model: dict) -> Optional[str]:
    """Why OFTConfig refuses the model section (checked with placeholder joint names), or None."""
    from oft_policy.model.config import ConfigError, OFTConfig

    values = {key: value for key, value in model.items() if value is not None}
    values.setdefault("openvla_path", "given at run time")  # shipped configs leave it to an override
    dim = model.get("action_dim")
    if _is_whole(dim) and dim > 0:
        values["joint_names"] = tuple(f"joint_{i}" for i in range(dim))
    try:
        OFTConfig(**values)
    except (ConfigError, TypeError) as exc:
        return str(exc)
    return None


def parse_override(text: str) -> dict:
    """``optimizer.lr=1e-4`` -> {"optimizer": {"lr": 1e-4}} (value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise TrainConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return {section: {name: _number_or_text(value)}}


def _number_or_text(value):
    """YAML 1.1 reads ``3e-3`` as text; accept it as the number it means."""
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        return float(value)
    return value


def _numbers_in(data):
    if isinstance(data, dict):
        return {k: _numbers_in(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_numbers_in(v) for v in data]
    return _number_or_text(data)


def load_config(path: Optional[str] = None, overrides: Iterable[str] = ()) -> dict:
    """Defaults, then the YAML file, then the overrides; validated."""
    config = copy.deepcopy(SECTIONS)
    if path:
        file = Path(path)
        if not file.is_file():
            raise TrainConfigError(f"config file {path} not found")
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise TrainConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        _merge(config, _numbers_in(data), str(path))
    for text in overrides:
        _merge(config, parse_override(text), f"override {text!r}")
    validate(config)
    return config


def _is_whole(value) -> bool:
    """An integer, not a bool (YAML's true/false are ints to isinstance)."""
    return isinstance(value, int) and not isinstance(value, bool)


def validate(config: dict) -> None:
    model, training, opt = config["model"], config["training"], config["optimizer"]
    if model["decoding"] not in TRAINABLE_DECODINGS:
        raise TrainConfigError(f"model.decoding {model['decoding']!r}: train trains one of {list(TRAINABLE_DECODINGS)}")
    positive = [("training", "max_steps"), ("training", "batch_size"), ("training", "grad_accumulation"),
                ("training", "checkpoint_every"), ("training", "validate_every"), ("training", "log_every"),
                ("model", "chunk_size"), ("model", "action_dim"), ("ddp", "nproc_per_node")]
    for section, key in positive:
        value = config[section][key]
        if not _is_whole(value) or value < 1:
            raise TrainConfigError(f"{section}.{key} must be a positive integer, got {value!r}")
    if not (isinstance(opt["lr"], (int, float)) and opt["lr"] > 0 and 0 <= opt["min_lr"] <= opt["lr"]):
        raise TrainConfigError(f"optimizer.lr must be > 0 and optimizer.min_lr in [0, lr], got {opt['lr']}, {opt['min_lr']}")
    cycle = opt["first_cycle_steps"]
    if not (_is_whole(cycle) and (cycle == 0 or opt["warmup_steps"] < cycle < training["max_steps"])):
        raise TrainConfigError("optimizer.first_cycle_steps must be 0 or an integer between optimizer.warmup_steps and "
                               f"training.max_steps ({training['max_steps']}), got {cycle!r}; "
                               "optimizer.first_cycle_steps=0 gives one cosine to max_steps")
    noise = training["proprio_noise_std"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < float("inf"):
        raise TrainConfigError(f"training.proprio_noise_std must be a number >= 0, got {noise!r}")
    if config["loss"]["kind"] not in ("l1", "huber"):
        raise TrainConfigError(f"loss.kind {config['loss']['kind']!r} is not one of ['l1', 'huber']")
    if training["logger"] not in ("tensorboard", "wandb", "none"):
        raise TrainConfigError(f"training.logger {training['logger']!r} is not one of tensorboard, wandb, none")
    if training["device"] not in ("auto", "cpu", "cuda"):
        raise TrainConfigError(f"training.device {training['device']!r} is not one of auto, cpu, cuda")
    if config["ddp"]["backend"] not in ("auto", "gloo", "nccl"):
        raise TrainConfigError(f"ddp.backend {config['ddp']['backend']!r} is not one of auto, gloo, nccl")
    init = training["init_from"]
    if init is not None and not (Path(init) / "model.safetensors").is_file():
        raise TrainConfigError(f"training.init_from {init!r} is not a checkpoint directory (no model.safetensors)")
    refused = model_config_error(model)
    if refused:
        raise TrainConfigError(f"model section: {refused}")
    if not config["data"]["dataset"]:
        raise TrainConfigError("data.dataset is not set (the exported LeRobot dataset directory)")


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
