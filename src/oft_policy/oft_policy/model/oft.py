"""OFTModel: Prismatic VLA (fused DINOv2+SigLIP -> MLP projector -> Llama) with OFT action decoding.

Sequence fed to the LLM (all decoding modes share the prefix)::

    [BOS] [camera 1 patches] .. [camera N patches] [proprio] [prompt tokens ...] [action part]

- ``parallel``: the action part is ``chunk_size * action_dim`` placeholder
  embeddings, all zero (they differ only by position). Prompt positions stay
  causal, as the pretrained LLM was trained (and so a prefix KV cache would
  stay valid); every placeholder attends to the whole prompt and to every
  other placeholder. The bidirectional block is expressed in the additive 4-D
  attention mask handed to the Llama, which the eager and SDPA attention
  implementations both apply as given. One forward pass, then the L1
  regression head maps each timestep's ``action_dim`` final states to its action.
- ``last_token_mlp``: causal prefix only; the last prompt token's final state
  goes through :class:`LastTokenMLPHead`.
- ``autoregressive``: OpenVLA's baseline, greedy token-by-token decoding of
  ``chunk_size * action_dim`` action tokens with a KV cache.

Submodule names (``vision_backbone.featurizer``, ``vision_backbone.fused_featurizer``,
``projector.fc1/fc2/fc3``, ``language_model``) are the published OpenVLA
checkpoint's, so its safetensors load by name.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import nn

from oft_policy.model.config import OFTConfig
from oft_policy.model.efficientnet import EFFICIENTNET_LITE0, EfficientNetVisionBackbone
from oft_policy.model.heads import ActionBins, L1RegressionHead, LastTokenMLPHead, ProprioProjector
from oft_policy.model.vit import VisionTransformer, vit_spec

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
OFT_MODULE_PREFIXES = ("action_head.", "proprio_projector.", "prefix_projector.")


class FusedVisionBackbone(nn.Module):
    """DINOv2 (``featurizer``) and SigLIP (``fused_featurizer``) patch features, concatenated per patch."""

    def __init__(self, timm_model_ids, image_size: int, film_dim: Optional[int]):
        super().__init__()
        dino_id, siglip_id = timm_model_ids
        self.featurizer = VisionTransformer(vit_spec(dino_id), image_size, film_dim)
        self.fused_featurizer = VisionTransformer(vit_spec(siglip_id), image_size, film_dim)
        self.embed_dim = self.featurizer.spec.embed_dim + self.fused_featurizer.spec.embed_dim
        self.num_patches = self.featurizer.num_patches

    @property
    def dtype(self) -> torch.dtype:
        return self.featurizer.pos_embed.dtype

    def pretrained_prefixes(self) -> tuple:
        """Parameter name prefixes of the pretrained towers (frozen with ``freeze_vision``, FiLM aside)."""
        return ("featurizer.", "fused_featurizer.")

    def unused_parameter_prefixes(self) -> tuple:
        """Prefixes :meth:`forward` never touches (kept for the checkpoint's weight names)."""
        return tuple(f"{tower}.{prefix}" for tower in ("featurizer", "fused_featurizer")
                     for prefix in getattr(self, tower).unused_parameter_prefixes())

    def forward(self, pixel_values: torch.Tensor, language: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 6, S, S] -> [B, num_patches, dino_dim + siglip_dim]."""
        dino = self.featurizer.patch_features(pixel_values[:, :3], language)
        siglip = self.fused_featurizer.patch_features(pixel_values[:, 3:], language)
        return torch.cat([dino, siglip], dim=2)


class PrismaticProjector(nn.Module):
    """Prismatic's ``fused-gelu-mlp``: vision_dim -> 4 * vision_dim -> llm_dim -> llm_dim, GELU between."""

    def __init__(self, vision_dim: int, llm_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.act_fn2 = nn.GELU()
        self.fc3 = nn.Linear(llm_dim, llm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act_fn2(self.fc2(self.act_fn1(self.fc1(features)))))


class OFTModel(nn.Module):
    """The policy network. Build it with :func:`oft_policy.model.build_model`."""

    def __init__(self, config: OFTConfig, text_config, timm_model_ids, action_vocab_end: int):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.config = config
        llm_dim = text_config.hidden_size
        film_dim = llm_dim if config.use_film else None
        if config.backbone == "tiny" and config.tiny_vision == EFFICIENTNET_LITE0:
            self.vision_backbone = EfficientNetVisionBackbone(config.image_size, film_dim)
        else:
            self.vision_backbone = FusedVisionBackbone(timm_model_ids, config.image_size, film_dim)
        self.projector = PrismaticProjector(self.vision_backbone.embed_dim, llm_dim)
        text_config._attn_implementation = config.attn_implementation
        self.language_model = LlamaForCausalLM(text_config)
        self.proprio_projector = ProprioProjector(config.action_dim, llm_dim) if config.use_proprio else None
        if config.decoding == "parallel":
            hidden = config.head_hidden_dim or llm_dim
            self.action_head = L1RegressionHead(llm_dim, config.action_dim, hidden, config.head_num_blocks)
        elif config.decoding == "last_token_mlp":
            self.action_head = LastTokenMLPHead(llm_dim, config.action_dim, config.chunk_size)
        else:
            self.action_head = None
        # Committed actions -> the embeddings of their rows' action slots (prefix conditioning).
        self.prefix_projector = (nn.Linear(config.action_dim, config.action_dim * llm_dim)
                                 if config.max_prefix_steps else None)
        self.action_bins = ActionBins(action_vocab_end, config.n_action_bins)
        self.lora_applied = False

    # ---- fine-tuning surface ---------------------------------------------
    def apply_finetune_settings(self) -> None:
        """LoRA (or full) LLM, frozen vision tower by default, trained heads; call after base weights load."""
        config = self.config
        if config.finetune == "lora" and not self.lora_applied:
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(
                r=config.lora_rank, lora_alpha=min(config.lora_rank, 16), lora_dropout=config.lora_dropout,
                target_modules=list(LORA_TARGETS),
            )
            inject_adapter_in_model(lora, self.language_model)
            self.lora_applied = True
        for name, param in self.named_parameters():
            param.requires_grad_(self._is_trainable(name))
        if config.gradient_checkpointing:
            self.language_model.activation_checkpointing_enable({"use_reentrant": False})

    def _unused_prefixes(self) -> tuple:
        """Parameters no forward pass reaches (kept for weight names); never trained, so DDP sees no unused ones."""
        unused = tuple(f"vision_backbone.{prefix}" for prefix in self.vision_backbone.unused_parameter_prefixes())
        if self.config.decoding != "autoregressive":
            unused += ("language_model.lm_head.",)
        return unused

    def _is_trainable(self, name: str) -> bool:
        if name.startswith(self._unused_prefixes()):
            return False
        if name.startswith(OFT_MODULE_PREFIXES) or name.startswith("projector."):
            return True
        if name.startswith("vision_backbone."):
            pretrained = name.startswith(tuple(f"vision_backbone.{p}" for p in self.vision_backbone.pretrained_prefixes()))
            return not pretrained or ".film_" in name or not self.config.freeze_vision
        if name.startswith("language_model."):
            return "lora_" in name if self.config.finetune == "lora" else True
        raise AssertionError(f"parameter {name} belongs to no known part")

    def trainable_state_dict(self) -> dict:
        """The parameters fine-tuning changes (LoRA adapter or full LLM, projector, FiLM, heads)."""
        return {name: p.detach() for name, p in self.named_parameters() if self._is_trainable(name)}

    # ---- sequence building -------------------------------------------------
    def patch_tokens(self, pixel_values, input_ids, attention_mask):
        """Projected patch tokens [B, cameras * num_patches, H] of every camera, in camera order
        (FiLM-conditioned on the mean prompt embedding when the model uses FiLM)."""
        return self._patch_tokens(pixel_values, self.language_model.model.embed_tokens(input_ids), attention_mask)

    def _patch_tokens(self, pixel_values, text, attention_mask):
        """:meth:`patch_tokens` from the prompt's embeddings ``text`` [B, L, H]."""
        config = self.config
        batch, cameras = pixel_values.shape[:2]
        if cameras != config.num_cameras:
            raise ValueError(f"pixel_values hold {cameras} cameras, the config names {config.num_cameras}")
        language = None
        if config.use_film:
            weights = attention_mask.bool().unsqueeze(-1).to(text.dtype)
            language = (text * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            language = language.repeat_interleave(cameras, dim=0)
        vision_dtype = self.vision_backbone.dtype
        features = self.vision_backbone(
            pixel_values.flatten(0, 1).to(vision_dtype), None if language is None else language.to(vision_dtype)
        )
        patches = self.projector(features.to(self.projector.fc1.weight.dtype)).to(text.dtype)
        return patches.reshape(batch, -1, patches.shape[-1])

    def _prefix(self, pixel_values, input_ids, attention_mask, proprio):
        """Embeddings [B, T, H] and key-validity mask [B, T] (bool) of BOS, patches, proprio, prompt."""
        config = self.config
        batch = pixel_values.shape[0]
        attention_mask = attention_mask.bool()
        text = self.language_model.model.embed_tokens(input_ids)
        parts = [text[:, :1], self._patch_tokens(pixel_values, text, attention_mask)]
        if config.use_proprio:
            if proprio is None:
                raise ValueError("this model uses proprio; pass the normalized proprio [B, action_dim]")
            proprio = proprio.to(self.proprio_projector.fc1.weight.dtype)
            parts.append(self.proprio_projector(proprio).to(text.dtype)[:, None])
        parts.append(text[:, 1:])
        embeds = torch.cat(parts, dim=1)
        extra = embeds.shape[1] - input_ids.shape[1]
        ones = torch.ones(batch, extra, dtype=torch.bool, device=input_ids.device)
        key_valid = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        return embeds, key_valid

    def _additive_mask(self, key_valid: torch.Tensor, num_queries: int, bidirectional_tail: int, dtype) -> torch.Tensor:
        """[B, 1, Q, K] additive mask: causal over the keys, keys invalid where padded, and the last
        ``bidirectional_tail`` queries see all of the last ``bidirectional_tail`` keys."""
        num_keys = key_valid.shape[1]
        query_index = torch.arange(num_keys - num_queries, num_keys, device=key_valid.device)[:, None]
        key_index = torch.arange(num_keys, device=key_valid.device)[None, :]
        allowed = key_index <= query_index
        if bidirectional_tail:
            tail_start = num_keys - bidirectional_tail
            allowed = allowed | ((query_index >= tail_start) & (key_index >= tail_start))
        allowed = allowed[None, None] & key_valid[:, None, None, :]
        mask = torch.zeros(allowed.shape, dtype=dtype, device=key_valid.device)
        return mask.masked_fill_(~allowed, torch.finfo(dtype).min)

    def _run_llm(self, embeds, key_valid, num_queries, bidirectional_tail=0, cache=None):
        positions = (key_valid.long().cumsum(1) - 1).clamp(min=0)[:, -num_queries:]
        mask = self._additive_mask(key_valid, num_queries, bidirectional_tail, embeds.dtype)
        return self.language_model.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
            cache=cache, use_cache=cache is not None,
        ).last_hidden_state

    # ---- decoding ------------------------------------------------------------
    def forward(self, pixel_values, input_ids, attention_mask, proprio=None, prefix=None, prefix_steps=None) -> torch.Tensor:
        """Normalized action chunk.

        Args:
            pixel_values: float32 [B, num_cameras, 6, S, S] from :func:`preprocess_images` (stacked).
            input_ids: int64 [B, L], BOS first, right-padded (:func:`tokenize_prompts`).
            attention_mask: int64/bool [B, L], 1 on real tokens.
            proprio: float32 [B, action_dim], already normalized (z-score); None only without proprio.
            prefix, prefix_steps: prefix conditioning (``max_prefix_steps`` > 0): float32 [B, P, action_dim]
                normalized committed actions and int64 [B] how many of their rows count (at most
                ``max_prefix_steps``); their rows' slots carry them. None: no committed actions.
        Returns:
            float32 [B, chunk_size, action_dim] normalized actions (targets live in [-1, 1]).
            In ``autoregressive`` mode this is the greedy decode (no gradient);
            train that mode with :meth:`autoregressive_loss`.
        """
        decoding = self.config.decoding
        if decoding == "autoregressive":
            return self.generate_autoregressive(pixel_values, input_ids, attention_mask, proprio)
        embeds, key_valid = self._prefix(pixel_values, input_ids, attention_mask, proprio)
        batch = embeds.shape[0]
        if decoding == "parallel":
            return self._decode_parallel(embeds, key_valid, prefix, prefix_steps)
        if prefix is not None:
            raise ValueError(f"prefix conditioning needs parallel decoding, not {decoding!r}")
        hidden = self._run_llm(embeds, key_valid, embeds.shape[1])
        last = key_valid.long().sum(1) - 1  # right padding: last real position
        last_state = hidden[torch.arange(batch, device=hidden.device), last]
        return self.action_head(last_state.to(self.action_head.fc1.weight.dtype)).float()

    def _decode_parallel(self, embeds, key_valid, prefix=None, prefix_steps=None) -> torch.Tensor:
        slots = embeds.new_zeros(embeds.shape[0], self.config.num_action_tokens, embeds.shape[2])
        if prefix is not None:
            slots = slots + self._prefix_slots(prefix, prefix_steps, slots)
        slot_states = self.parallel_slot_states(embeds, key_valid, slots)
        return self.action_head(slot_states.to(self.action_head.fc1.weight.dtype)).float()

    def _prefix_slots(self, prefix, prefix_steps, slots) -> torch.Tensor:
        """Slot embeddings [B, K, H]: projected committed actions on the first prefix_steps rows, 0 elsewhere."""
        if self.prefix_projector is None:
            raise ValueError("this model has no prefix conditioning (max_prefix_steps 0): pass no prefix")
        batch, rows, dim = prefix.shape
        if rows > self.config.max_prefix_steps or dim != self.config.action_dim or prefix_steps is None:
            raise ValueError(f"prefix must be [B, <= {self.config.max_prefix_steps}, {self.config.action_dim}] "
                             f"with prefix_steps [B]; got {tuple(prefix.shape)}")
        projected = self.prefix_projector(prefix.to(self.prefix_projector.weight.dtype)).to(slots.dtype)
        counted = torch.arange(rows, device=prefix.device)[None, :] < prefix_steps.to(prefix.device)[:, None]
        projected = (projected * counted[..., None]).reshape(batch, rows * dim, -1)
        out = torch.zeros_like(slots)
        out[:, : rows * dim] = projected
        return out

    def parallel_slot_states(self, embeds, key_valid, slot_embeds, bidirectional: bool = True) -> torch.Tensor:
        """Final hidden states [B, K, H] of K action slots appended after the prefix.

        OFT's slots are all-zero embeddings (see :meth:`forward`); ``bidirectional=False``
        keeps the slots causal (only for showing that the mask matters).
        """
        slots = slot_embeds.shape[1]
        embeds = torch.cat([embeds, slot_embeds.to(embeds.dtype)], dim=1)
        key_valid = torch.cat([key_valid, key_valid.new_ones(key_valid.shape[0], slots)], dim=1)
        hidden = self._run_llm(embeds, key_valid, embeds.shape[1], bidirectional_tail=slots if bidirectional else 0)
        return hidden[:, -slots:]

    def _action_logits(self, hidden_state: torch.Tensor) -> torch.Tensor:
        """Logits restricted to the action-bin ids: [B, n_bins], bin j at column j's token."""
        logits = self.language_model.lm_head(hidden_state)
        bins = self.action_bins
        return logits[:, bins.first_id:bins.vocab_end]

    @torch.no_grad()
    def generate_autoregressive(self, pixel_values, input_ids, attention_mask, proprio=None) -> torch.Tensor:
        from transformers import DynamicCache

        embeds, key_valid = self._prefix(pixel_values, input_ids, attention_mask, proprio)
        batch = embeds.shape[0]
        cache = DynamicCache(config=self.language_model.config)
        hidden = self._run_llm(embeds, key_valid, embeds.shape[1], cache=cache)
        state = hidden[torch.arange(batch, device=hidden.device), key_valid.long().sum(1) - 1]
        tokens = []
        embed_tokens = self.language_model.model.embed_tokens
        for _ in range(self.config.num_action_tokens):
            token = self._action_logits(state).argmax(dim=-1) + self.action_bins.first_id
            tokens.append(token)
            if len(tokens) == self.config.num_action_tokens:
                break
            key_valid = torch.cat([key_valid, key_valid.new_ones(batch, 1)], dim=1)
            state = self._run_llm(embed_tokens(token)[:, None], key_valid, 1, cache=cache)[:, 0]
        actions = self.action_bins.to_actions(torch.stack(tokens, dim=1))
        return actions.view(batch, self.config.chunk_size, self.config.action_dim)

    def teacher_forced_action_logits(self, pixel_values, input_ids, attention_mask, proprio, action_tokens):
        """Logits [B, K, n_bins] predicting each of the K given action tokens from everything before it."""
        if input_ids.shape[0] > 1 and not bool(attention_mask.bool().all()):
            raise ValueError("teacher forcing needs unpadded prompts (equal lengths) in a batch")
        embeds, key_valid = self._prefix(pixel_values, input_ids, attention_mask, proprio)
        count = action_tokens.shape[1]
        embeds = torch.cat([embeds, self.language_model.model.embed_tokens(action_tokens[:, :-1])], dim=1)
        key_valid = torch.cat([key_valid, key_valid.new_ones(action_tokens.shape[0], count - 1)], dim=1)
        hidden = self._run_llm(embeds, key_valid, embeds.shape[1])
        predicting = hidden[:, -count:]  # the last prompt token predicts the first action token
        logits = self._action_logits(predicting.reshape(-1, predicting.shape[-1]))
        return logits.view(-1, count, self.action_bins.n_bins)

    def autoregressive_loss(self, pixel_values, input_ids, attention_mask, proprio, target_actions) -> torch.Tensor:
        """Next-token cross-entropy on the discretized normalized target chunk [B, chunk, D] (OpenVLA's objective)."""
        tokens = self.action_bins.to_tokens(target_actions.flatten(1))
        logits = self.teacher_forced_action_logits(pixel_values, input_ids, attention_mask, proprio, tokens)
        return nn.functional.cross_entropy(logits.float().flatten(0, 1), (tokens - self.action_bins.first_id).flatten())


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
