"""Policy checkpoints: one directory with everything inference needs, and the inference API.

Layout::

    <dir>/oft_config.json     OFTConfig (joint names, camera names, chunk size, control period, ...)
    <dir>/model.safetensors   weights: all of them (tiny, or full fine-tuning), or only the fine-tuned
                              ones (LoRA adapter, projector, FiLM, heads) over the OpenVLA base
    <dir>/normalization.json  NormalizationStats (no stats, no load)
    <dir>/tokenizer/          tokenizer files
    <dir>/manifest.json       format version, weight scope, sha256 of every file, model_id

``model_id`` is a content hash over the files, so two checkpoints share an id
only if they predict identically. Saving writes a temporary sibling directory
and renames it into place, so a failed save leaves no partial checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch

from oft_policy.model.config import ConfigError, OFTConfig
from oft_policy.calibration import ConventionError, check_convention
from oft_policy.normalization import STATS_FILENAME, NormalizationStats, StatsError

FORMAT_VERSION = 1
CONFIG_FILE = "oft_config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, inconsistent or corrupted; nothing was loaded."""


@dataclass(frozen=True)
class PolicySpec:
    """What a runtime needs to know about a loaded policy."""

    joint_names: tuple
    camera_names: tuple
    chunk_size: int
    action_dim: int
    control_period_s: float
    model_id: str
    image_size: int
    max_prefix_steps: int = 0  # committed actions the policy can continue from (0: none)


# ---- saving -----------------------------------------------------------------

def _weight_scope(config: OFTConfig) -> str:
    return "finetuned" if config.backbone == "openvla" and config.finetune == "lora" else "full"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_files(root: Path) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def _model_id(file_hashes: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(file_hashes):
        digest.update(f"{name}\0{file_hashes[name]}\n".encode())
    return "oft-" + digest.hexdigest()[:16]


def save_checkpoint(out_dir, model, config: OFTConfig, stats: NormalizationStats, tokenizer,
                    extra: Optional[dict] = None, overwrite: bool = False) -> Path:
    """Write a checkpoint directory atomically; returns its path.

    ``extra`` (JSON-serializable) is stored in the manifest (e.g. training step, dataset).
    Raises CheckpointError if the stats do not fit the config, or ``out_dir``
    exists and ``overwrite`` is False.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if stats is None:
        raise CheckpointError("a checkpoint needs its NormalizationStats; refusing to save without them")
    _check_stats_fit(stats, config)
    try:
        check_convention(stats.convention, "the normalization stats")
    except ConventionError as exc:
        raise CheckpointError(f"refusing to save a checkpoint: {exc}") from exc
    if out_dir.exists() and not overwrite:
        raise CheckpointError(f"{out_dir} already exists; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (staging / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        stats.save(staging / STATS_FILENAME)
        state = model.trainable_state_dict() if _weight_scope(config) == "finetuned" else model.state_dict()
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(staging / WEIGHTS_FILE),
                  metadata={"format": "pt"})
        tokenizer.save_pretrained(str(staging / TOKENIZER_DIR))
        hashes = {str(p.relative_to(staging)): _file_sha256(p) for p in _content_files(staging)}
        manifest = {
            "format_version": FORMAT_VERSION,
            "weight_scope": _weight_scope(config),
            "model_id": _model_id(hashes),
            "files": hashes,
            "extra": extra or {},
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            retired = out_dir.with_name(f".{out_dir.name}.old")
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _check_stats_fit(stats: NormalizationStats, config: OFTConfig) -> None:
    if tuple(stats.joint_names) != tuple(config.joint_names):
        raise CheckpointError(
            f"normalization stats name joints {list(stats.joint_names)}, the config {list(config.joint_names)}"
        )


# ---- loading ----------------------------------------------------------------

def read_config(path) -> OFTConfig:
    """A checkpoint's OFTConfig alone, without its weights (e.g. its chunk size for an evaluation)."""
    path = Path(path)
    try:
        return OFTConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
    except (OSError, json.JSONDecodeError, ConfigError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has no readable config: {exc}") from exc


def _read_manifest(path: Path) -> dict:
    try:
        return json.loads((path / MANIFEST_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid manifest: {exc}") from exc


def _read_manifest_and_config(path: Path):
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    required = (MANIFEST_FILE, CONFIG_FILE, WEIGHTS_FILE, STATS_FILENAME, TOKENIZER_DIR)
    absent = [name for name in required if not (path / name).exists()]
    if STATS_FILENAME in absent:
        raise CheckpointError(
            f"checkpoint {path} has no normalization stats ({STATS_FILENAME}); refusing to load a policy "
            "without its normalizer (fit it with the training tools and save it with the checkpoint)"
        )
    if absent:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {absent}")
    manifest = _read_manifest(path)
    config = read_config(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format_version {manifest.get('format_version')!r} is not {FORMAT_VERSION}")
    try:
        stats = NormalizationStats.load(path / STATS_FILENAME)
    except StatsError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    _check_stats_fit(stats, config)
    try:
        check_convention(stats.convention, f"checkpoint {path}")
    except ConventionError as exc:
        raise CheckpointError(str(exc)) from exc
    return manifest, config, stats


def _verified_model_id(path: Path, manifest: dict) -> str:
    hashes = {str(p.relative_to(path)): _file_sha256(p) for p in _content_files(path)}
    if hashes != manifest.get("files"):
        raise CheckpointError(f"checkpoint {path} does not match its manifest (files changed or corrupted)")
    return _model_id(hashes)


def _load_weights(model, path: Path, scope: str) -> None:
    """Check every saved tensor against the model built from the config, then load; nothing on mismatch."""
    from safetensors.torch import load_file

    saved = load_file(str(path / WEIGHTS_FILE))
    expected = model.trainable_state_dict() if scope == "finetuned" else model.state_dict()
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    wrong = [f"{k}: saved {tuple(saved[k].shape)} vs config {tuple(expected[k].shape)}"
             for k in sorted(set(saved) & set(expected)) if saved[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint {path} weights disagree with its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {wrong[:5]}"
        )
    result = model.load_state_dict(saved, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys


def load_weights_only(model, path) -> str:
    """A checkpoint's weights into `model` (built from the same architecture), for a warm start; its
    normalizer and convention are not used (training brings its own). Returns the checkpoint's model id."""
    path = Path(path)
    if not (path / MANIFEST_FILE).is_file():
        raise CheckpointError(f"{path} is not a checkpoint directory (no {MANIFEST_FILE})")
    manifest = _read_manifest(path)
    model_id = _verified_model_id(path, manifest)
    _load_weights(model, path, manifest.get("weight_scope", "full"))
    return model_id


def load_policy(path, device="cpu", compile: bool = False, dtype: Optional[torch.dtype] = None) -> "OFTPolicy":
    """Load a checkpoint directory into an eval-mode :class:`OFTPolicy`; CheckpointError on any problem."""
    from oft_policy.model.build import build_model

    path = Path(path)
    manifest, config, stats = _read_manifest_and_config(path)
    scope = manifest.get("weight_scope", "full")
    try:
        # A full checkpoint holds every tensor: the base weights are not read (nor needed) to run it.
        model = build_model(config, device=device, dtype=dtype, load_base_weights=scope != "full")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path / TOKENIZER_DIR), local_files_only=True)
    except (ValueError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"cannot rebuild the model of checkpoint {path}: {exc}") from exc
    _load_weights(model, path, scope)
    model_id = _verified_model_id(path, manifest)  # last: a dims mismatch is reported as such first
    model.eval()
    return OFTPolicy(model, config, stats, tokenizer, model_id, device=device, compile=compile)


# ---- inference --------------------------------------------------------------

class OFTPolicy:
    """A loaded policy: robot-unit observations in, a robot-unit action chunk out."""

    def __init__(self, model, config: OFTConfig, stats: NormalizationStats, tokenizer, model_id: str,
                 device="cpu", compile: bool = False):
        self.model, self.config, self.stats, self.tokenizer = model, config, stats, tokenizer
        self.device = torch.device(device)
        self.spec = PolicySpec(
            joint_names=tuple(config.joint_names), camera_names=tuple(config.camera_names),
            chunk_size=config.chunk_size, action_dim=config.action_dim,
            control_period_s=config.control_period_s, model_id=model_id, image_size=config.image_size,
            max_prefix_steps=config.max_prefix_steps,
        )
        self._forward = torch.compile(model) if compile else model
        self._prompt_cache: dict = {}

    def _prompt(self, instruction: str):
        if instruction not in self._prompt_cache:
            from oft_policy.model.preprocess import tokenize_prompts

            ids, mask = tokenize_prompts(self.tokenizer, [instruction], self.config.prompt_template)
            self._prompt_cache = {instruction: (ids.to(self.device), mask.to(self.device))}
        return self._prompt_cache[instruction]

    def predict(self, images: Mapping[str, np.ndarray], instruction: str, proprio: np.ndarray,
                timings: Optional[dict] = None, committed: Optional[np.ndarray] = None) -> np.ndarray:
        """images: camera name -> uint8 HxWx3 (any size); proprio: [action_dim] in robot units;
        committed: [P, action_dim] robot-unit actions the arm runs while this chunk is computed, rows
        0..P-1 of it (a prefix-conditioned policy continues them; P <= spec.max_prefix_steps).

        Returns float32 [chunk_size, action_dim] in robot units. Deterministic (eval mode, no sampling).
        `timings`, if given, receives `preprocess` and `forward` (ms; the forward pass includes the copy
        of its result to the host, which waits for an accelerator to finish).
        """
        from oft_policy.model.preprocess import preprocess_images

        absent = [name for name in self.spec.camera_names if name not in images]
        if absent:
            raise ValueError(f"missing camera images {absent}; the policy needs {list(self.spec.camera_names)}")
        proprio = np.asarray(proprio, dtype=np.float64)
        if proprio.shape != (self.spec.action_dim,) or not np.all(np.isfinite(proprio)):
            raise ValueError(f"proprio must be {self.spec.action_dim} finite values, got shape {proprio.shape}")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction must be a non-empty string")
        started = time.perf_counter()
        pixel_values = preprocess_images(
            [images[name] for name in self.spec.camera_names], self.config.image_size,
            self.config.center_crop_scale, train=False,
        )[None].to(self.device)
        input_ids, attention_mask = self._prompt(instruction)
        normalized = torch.from_numpy(self.stats.normalize_proprio(proprio))[None].to(self.device)
        prefix = self._prefix(committed)
        prepared = time.perf_counter()
        with torch.inference_mode():
            actions = self._forward(pixel_values, input_ids, attention_mask, normalized, *prefix)[0].float().cpu().numpy()
        if timings is not None:
            timings["preprocess"] = (prepared - started) * 1e3
            timings["forward"] = (time.perf_counter() - prepared) * 1e3
        return self.stats.denormalize_action(actions)

    def _prefix(self, committed: Optional[np.ndarray]) -> tuple:
        """(prefix, prefix_steps) model inputs for committed robot-unit rows; () when there are none."""
        if committed is None or len(committed) == 0:
            return ()
        committed = np.asarray(committed, dtype=np.float64)
        limit = self.spec.max_prefix_steps
        if committed.ndim != 2 or committed.shape[1] != self.spec.action_dim or not np.all(np.isfinite(committed)):
            raise ValueError(f"committed actions must be finite [P, {self.spec.action_dim}], got {committed.shape}")
        if len(committed) > limit:
            raise ValueError(f"{len(committed)} committed actions; this policy continues at most {limit}")
        prefix = torch.from_numpy(self.stats.normalize_action(committed)).float()[None].to(self.device)
        return prefix, torch.tensor([len(committed)], device=self.device)

    def warm_up(self, instruction: str) -> float:
        """One prediction on black images at the mean proprio, so that the first real chunk does not
        pay for lazy initialization (kernel selection, allocator growth, torch.compile). Returns ms."""
        size = self.config.image_size
        black = {name: np.zeros((size, size, 3), dtype=np.uint8) for name in self.spec.camera_names}
        started = time.perf_counter()
        self.predict(black, instruction, self.stats.proprio.mean)
        return (time.perf_counter() - started) * 1e3
