"""The MLP's sampling fast path: the same arithmetic as MLP.forward in fewer passes over memory.

`fold_for_sampling(mlp)` snapshots the weights of a trained MLP into plain GEMM operands:
  - x and the residual stream h carry a constant-1 last column (homogeneous coordinates), so every bias
    is one more weight row and each layer is a plain GEMM (addmm with a bias first copies the broadcast
    bias into its output: one more pass);
  - the blocks' fc2 biases b2_j are carried in h from the start (h' = h + sum_{j>=i} b2_j before block i),
    which fc1 compensates with - W1 sum_{j>=i} b2_j;
  - the Fourier features come from one GEMM and one in-place sin, using cos(a) = sin(a + pi/2).
A block is then one GEMM, an in-place SiLU and one GEMM accumulated into h in place.

Where a batch shares one time, which the Denoiser marks by passing t expanded from one value (stride 0: checking
that costs no device sync), the time embedding joins fc1's bias. Where rows have times of their own (a distillation
teacher's batch, a few levels in a thousand rows), every distinct (time, class) is embedded once and each row adds
its own (torch.unique: one device sync on a GPU; mostly distinct times embed every row). Per call to the default
MLP on 1,024 rows (benchmarks/mlp_fast.py; Zen 5 EPYC, AVX-512, native bf16: True, one thread): one time 0.47 ms,
32 levels 0.54 ms, a time per row 0.74 ms, against MLP.forward's 0.76. A float class blend or a guidance scale in
the cond, and an MLP with LayerNorm in its blocks (nothing folds through a LayerNorm), take MLP.forward. The
sampling front door applies it (`diffkit.nn.registry.for_sampling`); tests check it against MLP.forward.
"""

from __future__ import annotations

import torch
from torch import nn

from .mlp import MLP


def shares_one_time(t: torch.Tensor) -> bool:
    """True when every row of t is the same value by construction (an expanded tensor): no data is read."""
    return t.dim() == 1 and (len(t) == 1 or t.stride(0) == 0)


class FoldedMLP(nn.Module):
    """A frozen snapshot of an MLP for sampling; see the module docstring."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.mlp = mlp.eval()
        cfg = mlp.cfg
        H, D, F = cfg.hidden, cfg.dim, cfg.fourier_features
        self.foldable = not cfg.norm
        with torch.no_grad():
            self.carried = torch.stack([b.fc2.bias for b in mlp.blocks]).flip(0).cumsum(0).flip(0)  # sum_{j>=i} b2_j
            W = mlp.inp.weight  # columns: x, then the cos and sin features
            w_in = W.new_zeros(D + 1, H + 1)  # transposed: x1 @ w_in
            w_in[:D, :H], w_in[D, :H], w_in[D, H] = W[:, :D].t(), mlp.inp.bias + self.carried[0], 1.0  # column H keeps the 1
            self.w_in = w_in
            self.w_proj = self.w_feat = None
            if F:
                phase = torch.cat([torch.full((F,), torch.pi / 2), torch.zeros(F)]).to(W)
                self.w_proj = torch.cat([(2 * torch.pi * mlp.fourier).repeat(1, 2), phase[None]])  # [D + 1, 2F]
                self.w_feat = W[:, D:].t().contiguous()
            self.w1 = [b.fc1.weight.t().contiguous() for b in mlp.blocks]  # [H, H]
            self.b1 = [b.fc1.bias - b.fc1.weight @ self.carried[i] for i, b in enumerate(mlp.blocks)]  # [H]
            self.w2 = [b.fc2.weight.t().contiguous() for b in mlp.blocks]

    @property
    def cfg(self):
        return self.mlp.cfg

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if not self.foldable or torch.is_grad_enabled() or isinstance(cond, dict) \
                or (cond is not None and cond.is_floating_point()):
            return self.mlp(x, t, cond)
        # float32 arithmetic with in-place matmuls: an enclosing autocast (a distillation step timed or trained in
        # bf16 calls its teacher here) must not turn some of them bf16
        with torch.autocast(x.device.type, enabled=False):
            return self._folded(x.float(), t, cond).to(x.dtype)

    def _row_embeddings(self, t, cond) -> torch.Tensor:
        """Every row's embedding [B, depth, H], each distinct (time, class) embedded once (1-D unique: ~100x
        faster than over pairs with dim=0); mostly distinct times embed every row, which costs less than gathering."""
        times, row = torch.unique(t, return_inverse=True)
        if 2 * len(times) > len(t):
            return self.mlp.embedding(t, cond)
        if cond is None:
            return self.mlp.embedding(times, None)[row]
        classes = self.cfg.num_classes + 1  # a (time, class) pair as one integer
        pairs, row = torch.unique(row * classes + cond, return_inverse=True)
        return self.mlp.embedding(times[pairs // classes], pairs % classes)[row]

    @torch.no_grad()
    def _folded(self, x, t, cond):
        if not shares_one_time(t):  # per-row times: each row adds its own embedding
            biases, per_row = self.b1, self._row_embeddings(t, cond).unbind(1)  # depth x [B, H]
        elif cond is None or shares_one_time(cond):  # one embedding for the whole batch: it joins fc1's bias
            e = self.mlp.embedding(t[:1], None if cond is None else cond[:1])[0]  # [depth, H]
            biases, per_row = [b + e_i for b, e_i in zip(self.b1, e)], None
        else:  # mixed classes: embed every class once at this time, add each row's own
            classes = torch.arange(self.cfg.num_classes + 1, device=x.device)
            table = self.mlp.embedding(t[:1].expand(len(classes)), classes)  # [C + 1, depth, H]
            biases, per_row = self.b1, table[cond].unbind(1)  # depth x [B, H]
        H = self.cfg.hidden
        w_blocks = [torch.cat([w1, b[None]]) for w1, b in zip(self.w1, biases)]  # [H + 1, H]
        x1 = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)  # [B, D + 1]
        h = x1 @ self.w_in  # [B, H + 1]
        stream = h[:, :H]  # a view: the layers write here, column H stays exactly 1
        if self.w_proj is not None:
            stream.addmm_((x1 @ self.w_proj).sin_(), self.w_feat)
        for i, (w1, w2) in enumerate(zip(w_blocks, self.w2)):
            a = h @ w1
            if per_row is not None:
                a.add_(per_row[i])
            stream.addmm_(nn.functional.silu(a, inplace=True), w2)
        z = self.mlp.out_norm(stream.contiguous())  # LayerNorm runs ~1.4x faster on contiguous rows
        return self.mlp.out(nn.functional.silu(z, inplace=True))


def fold_for_sampling(mlp: MLP) -> FoldedMLP:
    """The fast sampling path of a trained MLP (a snapshot: later weight changes are not seen)."""
    return FoldedMLP(mlp)
