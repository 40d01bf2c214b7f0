"""Action heads, the proprio projector, and OpenVLA's 256-bin action tokenizer."""

from __future__ import annotations

import torch
from torch import nn


class ProprioProjector(nn.Module):
    """Normalized proprio [B, D] -> one LLM token [B, H] (Linear -> GELU -> Linear, as openvla-oft)."""

    def __init__(self, proprio_dim: int, llm_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, llm_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act_fn1(self.fc1(proprio)))


class ResidualMLPBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class L1RegressionHead(nn.Module):
    """openvla-oft's parallel-decoding head.

    Input: the final hidden states of one timestep's ``action_dim`` placeholder
    tokens, concatenated ([B, chunk, action_dim * H]). LayerNorm -> Linear to
    ``hidden_dim`` -> ReLU -> ``num_blocks`` residual blocks -> LayerNorm ->
    Linear to ``action_dim``.
    """

    def __init__(self, llm_dim: int, action_dim: int, hidden_dim: int, num_blocks: int = 2):
        super().__init__()
        self.action_dim = action_dim
        in_dim = llm_dim * action_dim
        self.layer_norm1 = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.blocks = nn.ModuleList(ResidualMLPBlock(hidden_dim) for _ in range(num_blocks))
        self.layer_norm2 = nn.LayerNorm(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, action_dim)

    def forward(self, slot_states: torch.Tensor) -> torch.Tensor:
        """[B, chunk * action_dim, H] -> [B, chunk, action_dim]."""
        batch, tokens, hidden = slot_states.shape
        x = slot_states.reshape(batch, tokens // self.action_dim, self.action_dim * hidden)
        x = self.relu(self.fc1(self.layer_norm1(x)))
        for block in self.blocks:
            x = block(x)
        return self.fc2(self.layer_norm2(x))


class LastTokenMLPHead(nn.Module):
    """The design notes' simpler head: last token state -> 1024 -> 512 -> chunk * action_dim.

    Hidden layers Xavier-uniform (zero bias); the output layer starts near zero
    (normal std 1e-3, zero bias) so the first predictions sit at the centre of
    the normalized action range instead of at random extremes.
    """

    HIDDEN = (1024, 512)
    OUTPUT_INIT_STD = 1e-3

    def __init__(self, llm_dim: int, action_dim: int, chunk_size: int, dropout: float = 0.1):
        super().__init__()
        self.action_dim, self.chunk_size = action_dim, chunk_size
        first, second = self.HIDDEN
        self.fc1 = nn.Linear(llm_dim, first)
        self.fc2 = nn.Linear(first, second)
        self.out = nn.Linear(second, action_dim * chunk_size)
        self.act = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        for layer in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.out.weight, mean=0.0, std=self.OUTPUT_INIT_STD)
        nn.init.zeros_(self.out.bias)

    def forward(self, last_state: torch.Tensor) -> torch.Tensor:
        """[B, H] -> [B, chunk, action_dim]."""
        x = self.dropout(self.act(self.fc1(last_state)))
        x = self.dropout(self.act(self.fc2(x)))
        return self.out(x).view(-1, self.chunk_size, self.action_dim)


class ActionBins:
    """OpenVLA's discretization: ``n_bins`` uniform bins over [-1, 1] on the last vocabulary ids.

    Normalized actions come from the checkpoint's stats (q01/q99 bounds as
    OpenVLA, or min/max), so the bin edges are those bounds in robot units.
    Bin ``j`` is token ``vocab_end - 1 - j`` (higher values on lower ids, as
    OpenVLA's action tokenizer orders them).
    """

    def __init__(self, vocab_end: int, n_bins: int = 256):
        if vocab_end < n_bins:
            raise ValueError(f"vocabulary of {vocab_end} ids cannot hold {n_bins} action bins")
        self.vocab_end, self.n_bins = vocab_end, n_bins
        self.first_id = vocab_end - n_bins

    def to_tokens(self, actions: torch.Tensor) -> torch.Tensor:
        bins = ((actions.clamp(-1.0, 1.0) + 1.0) * 0.5 * self.n_bins).long().clamp(0, self.n_bins - 1)
        return self.vocab_end - 1 - bins

    def to_actions(self, tokens: torch.Tensor) -> torch.Tensor:
        bins = (self.vocab_end - 1 - tokens).clamp(0, self.n_bins - 1).float()
        return (bins + 0.5) * (2.0 / self.n_bins) - 1.0
