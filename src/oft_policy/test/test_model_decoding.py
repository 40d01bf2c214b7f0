"""Tiny backbone: output shapes of every decoding mode, padding invariance, and the bidirectional action block."""

import pytest
import torch

from oft_policy import names
from oft_policy.model import OFTConfig, build_model


def tiny_config(cameras=3, chunk=25, **kwargs):
    return OFTConfig(camera_names=names.CAMERA_NAMES[:cameras], chunk_size=chunk, **kwargs)


@pytest.mark.parametrize("cameras", [1, 3])
@pytest.mark.parametrize("chunk", [1, 10, 25])
def test_parallel_chunk_shapes(cameras, chunk, tiny_tokenizer, make_inputs):
    config = tiny_config(cameras, chunk)
    model = build_model(config, seed=0).eval()
    inputs = make_inputs(config, tiny_tokenizer, ("pick up the cube", "open the drawer"))
    with torch.no_grad():
        actions = model(*inputs)
    assert actions.shape == (2, chunk, config.action_dim) and actions.dtype == torch.float32
    assert torch.isfinite(actions).all()


@pytest.mark.parametrize("decoding", ["last_token_mlp", "autoregressive"])
def test_other_decodings_shapes(decoding, tiny_tokenizer, make_inputs):
    config = tiny_config(cameras=1, chunk=3, decoding=decoding)
    model = build_model(config, seed=0).eval()
    with torch.no_grad():
        actions = model(*make_inputs(config, tiny_tokenizer, ("pick", "open the drawer")))
    assert actions.shape == (2, 3, config.action_dim)
    if decoding == "autoregressive":  # bin centres inside [-1, 1]
        assert actions.abs().max() < 1.0


@pytest.mark.parametrize("decoding", ["parallel", "last_token_mlp", "autoregressive"])
def test_right_padding_does_not_change_a_sample(decoding, tiny_tokenizer, make_inputs):
    """A short prompt padded in a batch predicts what it predicts alone (mask + positions are right)."""
    config = tiny_config(cameras=1, chunk=4, decoding=decoding)
    model = build_model(config, seed=0).eval()
    batch = make_inputs(config, tiny_tokenizer, ("go", "pick up the red cube and place it in the bin"))
    alone = [t[:1] for t in batch]
    alone[1], alone[2] = alone[1][:, : int(batch[2][0].sum())], alone[2][:, : int(batch[2][0].sum())]
    assert alone[1].shape[1] < batch[1].shape[1]  # the batch row really is padded
    with torch.no_grad():
        torch.testing.assert_close(model(*batch)[0], model(*alone)[0], atol=1e-5, rtol=1e-4)


def _prefix_and_slots(model, inputs, chunk_size, action_dim):
    with torch.no_grad():
        embeds, key_valid = model._prefix(*inputs)
    slots = torch.zeros(embeds.shape[0], chunk_size * action_dim, embeds.shape[2])
    return embeds, key_valid, slots


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_action_slots_attend_bidirectionally(attn, tiny_tokenizer, make_inputs):
    """Changing a later slot's input changes an earlier slot's output, through the mask we pass."""
    config = tiny_config(cameras=1, chunk=4, attn_implementation=attn)
    model = build_model(config, seed=0).eval()
    embeds, key_valid, slots = _prefix_and_slots(model, make_inputs(config, tiny_tokenizer), 4, config.action_dim)
    later = slots.clone()
    later[:, -1] = 1.0  # the last slot (last timestep, last joint)
    with torch.no_grad():
        base = model.parallel_slot_states(embeds, key_valid, slots)
        changed = model.parallel_slot_states(embeds, key_valid, later)
        causal_base = model.parallel_slot_states(embeds, key_valid, slots, bidirectional=False)
        causal_changed = model.parallel_slot_states(embeds, key_valid, later, bidirectional=False)
    assert (changed[:, 0] - base[:, 0]).abs().max() > 1e-3
    # Control: with a causal mask the first slot cannot see the last one, so the test can fail.
    torch.testing.assert_close(causal_changed[:, 0], causal_base[:, 0])


def test_prompt_stays_causal_and_implementations_agree(tiny_tokenizer, make_inputs):
    """Prompt states ignore the slots; eager and SDPA give the same chunk from the same weights and mask."""
    outputs = []
    for attn in ("sdpa", "eager"):
        config = tiny_config(cameras=3, chunk=2, attn_implementation=attn)
        model = build_model(config, seed=0).eval()
        inputs = make_inputs(config, tiny_tokenizer)
        with torch.no_grad():
            outputs.append(model(*inputs))
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-4)
    embeds, key_valid, slots = _prefix_and_slots(model, inputs, 2, config.action_dim)
    with torch.no_grad():
        prompt_only = model._run_llm(embeds, key_valid, embeds.shape[1])
        with_slots = model._run_llm(torch.cat([embeds, slots + 1.0], 1),
                                    torch.cat([key_valid, key_valid.new_ones(1, slots.shape[1])], 1),
                                    embeds.shape[1] + slots.shape[1], bidirectional_tail=slots.shape[1])
    torch.testing.assert_close(with_slots[:, : embeds.shape[1]], prompt_only, atol=1e-5, rtol=1e-4)


def test_film_lets_language_modulate_vision(make_inputs, tiny_tokenizer):
    config = tiny_config(cameras=1, chunk=1)
    model = build_model(config, seed=0).eval()
    block = model.vision_backbone.featurizer.blocks[0]
    assert block.film_scale is not None and block.film_scale.weight.requires_grad
    pixel_values = make_inputs(config, tiny_tokenizer)[0][:, 0]
    lang_a, lang_b = torch.randn(2, 1, 64)
    with torch.no_grad():
        same = [model.vision_backbone(pixel_values, lang) for lang in (lang_a, lang_b)]
        torch.testing.assert_close(same[0], same[1])  # FiLM starts as the identity
        torch.nn.init.normal_(block.film_scale.weight, std=0.1)
        moved = [model.vision_backbone(pixel_values, lang) for lang in (lang_a, lang_b)]
    assert (moved[0] - moved[1]).abs().max() > 1e-4
    plain = build_model(tiny_config(cameras=1, chunk=1, use_film=False), seed=0)
    assert not any(".film_" in name for name, _ in plain.named_parameters())


def test_finetune_surface():
    lora = build_model(tiny_config(cameras=1, chunk=1), seed=0)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert not any(n.startswith("language_model.") and "lora_" not in n for n in trainable)
    assert not any(n.startswith("vision_backbone.") and ".film_" not in n for n in trainable)
    assert {"action_head.fc2.weight", "proprio_projector.fc1.weight", "projector.fc1.weight"} <= trainable
    full = build_model(tiny_config(cameras=1, chunk=1, finetune="full", freeze_vision=False), seed=0)
    assert not any("lora_" in n for n, _ in full.named_parameters())
    frozen = {n for n, p in full.named_parameters() if not p.requires_grad}
    # Only what no forward pass reaches stays frozen: the towers' last block, final norm and MAP head
    # (Prismatic reads the second-to-last block), and lm_head outside autoregressive decoding.
    assert frozen and all(".blocks.1." in n or ".norm." in n or ".attn_pool." in n or "lm_head" in n for n in frozen)


def test_every_trainable_parameter_gets_a_gradient(tiny_tokenizer, make_inputs):
    """So DistributedDataParallel needs no find_unused_parameters, for every surface and decoding."""
    for decoding, finetune, freeze in (("parallel", "full", False), ("last_token_mlp", "lora", True)):
        config = tiny_config(cameras=1, chunk=2, decoding=decoding, finetune=finetune, freeze_vision=freeze)
        model = build_model(config, seed=0).train()
        model(*make_inputs(config, tiny_tokenizer)).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, (decoding, finetune, missing[:5])
    config = tiny_config(cameras=1, chunk=2, decoding="autoregressive", finetune="full", freeze_vision=False)
    model = build_model(config, seed=0).train()
    inputs = make_inputs(config, tiny_tokenizer)
    model.autoregressive_loss(*inputs, torch.zeros(1, 2, config.action_dim)).backward()
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_autoregressive_kv_cache_decode_matches_teacher_forcing(attn, tiny_tokenizer, make_inputs):
    """Greedy token-by-token decoding with the KV cache picks the argmax of the full-sequence logits."""
    config = tiny_config(cameras=1, chunk=3, decoding="autoregressive", attn_implementation=attn)
    model = build_model(config, seed=0).eval()
    inputs = make_inputs(config, tiny_tokenizer)
    with torch.no_grad():
        actions = model(*inputs)
        tokens = model.action_bins.to_tokens(actions.flatten(1))
        logits = model.teacher_forced_action_logits(*inputs, tokens)
    assert torch.equal(logits.argmax(-1) + model.action_bins.first_id, tokens)
    model.train()
    loss = model.autoregressive_loss(*inputs, actions)
    loss.backward()
    lora_b = model.language_model.model.layers[0].self_attn.q_proj.lora_B["default"].weight
    assert torch.isfinite(loss) and lora_b.grad.abs().sum() > 0


def test_gradient_checkpointing_trains(tiny_tokenizer, make_inputs):
    config = tiny_config(cameras=1, chunk=2, gradient_checkpointing=True)
    model = build_model(config, seed=0).train()
    assert model.language_model.is_activation_checkpointing
    model(*make_inputs(config, tiny_tokenizer)).abs().mean().backward()
    assert model.language_model.model.layers[0].mlp.down_proj.lora_B["default"].weight.grad.abs().sum() > 0
