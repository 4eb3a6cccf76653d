"""Exponential moving average of weights with a half-life in training points seen (Karras et al. 2022)."""

from __future__ import annotations

import torch


class EMA:
    """ema <- beta ema + (1 - beta) theta with beta = 0.5 ** (batch / half_life).

    The half-life is capped at `rampup` x points seen so far, so early weights are forgotten fast
    (EDM training_loop: ema_halflife_kimg / ema_rampup_ratio). It averages the trainable parameters only (a LoRA
    run's adapters; frozen weights stay as they are).
    """

    def __init__(self, model: torch.nn.Module, half_life: float, rampup: float | None = 0.1):
        self.half_life = half_life
        self.rampup = rampup
        self.params = [p.detach().clone() for p in model.parameters() if p.requires_grad]

    def beta(self, points_seen: int, batch_size: int) -> float:
        if self.half_life == 0:  # no averaging: the EMA is the current weights
            return 0.0
        half_life = self.half_life
        if self.rampup is not None:
            half_life = min(half_life, points_seen * self.rampup)
        return 0.5 ** (batch_size / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, params: list[torch.Tensor], points_seen: int, batch_size: int) -> None:
        """Move the EMA toward the model's current trainable parameters (in model.parameters() order)."""
        weight = 1.0 - self.beta(points_seen, batch_size)
        torch._foreach_lerp_(self.params, [p.detach() for p in params], weight)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """EMA weights under the model's parameter names (buffers taken from the model)."""
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state.update({n: p.clone() for n, p in zip(names, self.params)})
        return state

    def load_params(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        for p, n in zip(self.params, names):
            p.copy_(state[n])
