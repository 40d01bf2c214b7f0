"""Action heads: initialization statistics, shapes, and the 256-bin action tokenizer."""

import math

import pytest
import torch

from oft_policy.model.heads import ActionBins, L1RegressionHead, LastTokenMLPHead, ProprioProjector


def test_last_token_mlp_init_statistics():
    torch.manual_seed(0)
    head = LastTokenMLPHead(llm_dim=256, action_dim=14, chunk_size=25)
    for layer, (fan_in, fan_out) in ((head.fc1, (256, 1024)), (head.fc2, (1024, 512))):
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Xavier-uniform
        weight = layer.weight.detach()
        assert weight.abs().max() <= bound
        assert weight.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.03)
        assert weight.mean().abs().item() < 0.05 * bound
        assert torch.count_nonzero(layer.bias) == 0
    out = head.out.weight.detach()
    assert out.shape == (25 * 14, 512)
    assert out.std().item() == pytest.approx(1e-3, rel=0.03)
    assert torch.count_nonzero(head.out.bias) == 0
    head.eval()
    actions = head(torch.randn(2, 256))
    assert actions.shape == (2, 25, 14)
    assert actions.abs().max() < 0.05  # first predictions sit near the centre of [-1, 1]
    head.train()  # dropout 0.1 is active only in training
    x = torch.randn(2, 256)
    assert not torch.equal(head(x), head(x))


def test_l1_head_maps_each_timestep_from_its_slots():
    torch.manual_seed(0)
    head = L1RegressionHead(llm_dim=8, action_dim=3, hidden_dim=16, num_blocks=2).eval()
    assert len(head.blocks) == 2
    states = torch.randn(2, 5 * 3, 8)
    actions = head(states)
    assert actions.shape == (2, 5, 3)
    changed = states.clone()
    changed[:, 3:6] += 1.0  # the slots of timestep 1 only
    moved = (head(changed) - actions).abs().amax(dim=(0, 2))
    assert moved[1] > 0 and torch.all(moved[[0, 2, 3, 4]] == 0)
    assert ProprioProjector(14, 8)(torch.zeros(3, 14)).shape == (3, 8)


def test_action_bins_round_trip_on_last_vocabulary_ids():
    bins = ActionBins(vocab_end=32000, n_bins=256)
    actions = torch.linspace(-1.0, 1.0, 1001)
    tokens = bins.to_tokens(actions)
    assert tokens.min() == 31744 and tokens.max() == 31999  # the last 256 ids of Llama's 32000
    assert tokens[0] == 31999 and tokens[-1] == 31744  # higher values on lower ids, as OpenVLA
    assert (bins.to_actions(tokens) - actions).abs().max() <= 1.0 / 256 + 1e-6
    assert bins.to_tokens(torch.tensor([5.0, -5.0])).tolist() == [31744, 31999]  # clipped
