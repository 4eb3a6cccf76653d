"""Data sources: what the trainer draws batches from. A source has `draw(batch_size, generator) -> (x0, cond)`
with x0 [B, ...] in the standard range and cond None or class ids [B]; points, images, a VAE's latents or
captioned images plug in the same way.
"""

from __future__ import annotations

import torch


class TensorSource:
    """Examples held in memory, drawn uniformly with replacement (x0 [N, ...] normalized, labels long [N]).

    flip: mirror each drawn image left-right with probability 1/2 (opt-in: wrong for digits and text)."""

    def __init__(self, x0: torch.Tensor, labels: torch.Tensor | None = None, flip: bool = False):
        self.x0 = x0.float().contiguous()
        self.labels = labels
        self.flip = flip

    def __len__(self) -> int:
        return self.x0.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x0.shape[1:])

    def draw(self, batch_size: int, generator: torch.Generator):
        idx = torch.randint(0, len(self), (batch_size,), generator=generator)
        x0 = self.x0[idx]
        if self.flip:
            mirrored = torch.rand(batch_size, generator=generator) < 0.5
            x0 = torch.where(mirrored.reshape(-1, *([1] * (x0.dim() - 1))), x0.flip(-1), x0)
        return x0, (None if self.labels is None else self.labels[idx])
