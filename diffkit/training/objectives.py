"""What a training step minimises, per kind of network: the diffusion loss for denoisers, the VAE loss for
autoencoders. An objective draws its own randomness for a batch (from the trainer's generator, in a fixed
order) and returns a per-sample loss; the Trainer owns everything else (optimizer, EMA, ranks, checkpoints).
"""

from __future__ import annotations

import torch

from ..nn.vae import VAEConfig, vae_loss
from .loss import min_snr_weight, simple_loss


class DiffusionObjective:
    """L_simple on x_t = q_sample(x0, t, eps), t ~ U{0..T-1}, eps ~ N(0, I) (Ho et al. 2020, Algorithm 1),
    optionally Min-SNR-gamma weighted."""

    def __init__(self, config, schedule):
        self.schedule, self.prediction, self.gamma = schedule, config.prediction, config.train.min_snr_gamma

    def draw(self, batch_size: int, shape, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        t = torch.randint(0, self.schedule.num_timesteps, (batch_size,), generator=generator)
        return t, torch.randn((batch_size, *shape), generator=generator)

    def loss(self, model, x0, draws, cond) -> torch.Tensor:
        t, eps = draws
        loss = simple_loss(model, self.schedule, self.prediction, x0, t, eps, cond).float()
        if self.gamma > 0:
            loss = loss * min_snr_weight(self.prediction, self.schedule.alpha_bar_at(t),
                                         self.gamma).to(loss.device, loss.dtype)
        return loss


class VAEObjective:
    """Reconstruction MSE + beta KL with z = mean + std * noise, noise ~ N(0, I) of the latent's shape."""

    def __init__(self, cfg: VAEConfig):
        self.cfg = cfg

    def draw(self, batch_size: int, shape, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.randn((batch_size, *self.cfg.latent_shape(shape)), generator=generator),)

    def loss(self, model, x0, draws, cond) -> torch.Tensor:
        x_hat, mean, logvar = model(x0, draws[0])
        return vae_loss(x0, x_hat, mean, logvar, self.cfg.kl_weight)


def objective_for(config, schedule):
    return VAEObjective(config.network) if isinstance(config.network, VAEConfig) else DiffusionObjective(config, schedule)
