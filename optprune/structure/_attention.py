"""A small multi-head self-attention block whose heads can be pruned.

``torch.nn.MultiheadAttention`` ties the inner width of q/k/v to ``embed_dim``,
so it cannot lose heads. This module keeps four separate projections,

    Q = X W_q^T + b_q,  K = X W_k^T + b_k,  V = X W_v^T + b_v     (inner width H * d)
    head_h = softmax(Q_h K_h^T / sqrt(d)) V_h                      (h = 1..H)
    out    = concat(head_1, ..., head_H) W_o^T + b_o               (width embed_dim)

(Vaswani et al. 2017, "Attention Is All You Need", eq. 1 and section 3.2.2), and
removing head ``h`` removes rows ``h*d .. (h+1)*d - 1`` of W_q, W_k, W_v (and
their biases) and the same columns of W_o (Michel et al. 2019, "Are Sixteen Heads
Really Better than One?"). ``num_heads`` follows the projections' width, while
``head_dim`` stays fixed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from optprune.errors import InvalidParameterError

__all__ = ["MultiHeadSelfAttention"]


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over inputs of shape (batch, tokens, embed_dim); heads are prunable."""

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int | None = None, bias: bool = True) -> None:
        super().__init__()
        if embed_dim < 1 or num_heads < 1:
            raise InvalidParameterError(
                f"MultiHeadSelfAttention: embed_dim and num_heads must be >= 1, got {embed_dim} and {num_heads}"
            )
        if head_dim is None:
            if embed_dim % num_heads:
                raise InvalidParameterError(
                    f"MultiHeadSelfAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                    f"({num_heads}) when head_dim is not given"
                )
            head_dim = embed_dim // num_heads
        self.embed_dim = int(embed_dim)
        self.num_heads = int(num_heads)
        self.head_dim = int(head_dim)
        inner = self.num_heads * self.head_dim
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.k_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.v_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        heads = self.q_proj.out_features // self.head_dim

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(n, t, heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(n, t, heads * self.head_dim)
        return self.out_proj(ctx)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadSelfAttention:
        """Copy the weights of a batch-first ``nn.MultiheadAttention`` used as self-attention.

        ``mha(x, x, x, need_weights=False)[0]`` equals ``MultiHeadSelfAttention.from_torch(mha)(x)``.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise InvalidParameterError(
                f"from_torch: expected an nn.MultiheadAttention, got {type(mha).__name__}"
            )
        if not mha._qkv_same_embed_dim or not mha.batch_first or mha.bias_k is not None:
            raise InvalidParameterError(
                "from_torch: only batch_first self-attention with equal q/k/v widths and no add_bias_kv is "
                f"supported; got batch_first={mha.batch_first}, kdim={mha.kdim}, vdim={mha.vdim}, "
                f"add_bias_kv={mha.bias_k is not None}"
            )
        has_bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, bias=has_bias)
        e = mha.embed_dim
        with torch.no_grad():
            for i, proj in enumerate((new.q_proj, new.k_proj, new.v_proj)):
                proj.weight.copy_(mha.in_proj_weight[i * e : (i + 1) * e])
                if has_bias:
                    proj.bias.copy_(mha.in_proj_bias[i * e : (i + 1) * e])
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if has_bias:
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"
