"""What a training step minimises, per kind of network: the diffusion loss for denoisers (ddpm on a VP schedule;
flow matching and EDM on their paths), the VAE loss for autoencoders. An objective draws its own randomness for a batch (from the trainer's generator, in a fixed
order) and returns a per-sample loss; the Trainer owns everything else (optimizer, EMA, ranks, checkpoints).
"""

from __future__ import annotations

import torch

from ..nn.vae import VAEConfig, vae_loss
from ..path import shift_time
from ..prediction import target_on_path
from .loss import foreground_weighted, min_snr_weight, simple_loss

F64 = torch.float64


class DiffusionObjective:
    """L_simple on x_t = q_sample(x0, t, eps), t ~ U{0..T-1}, eps ~ N(0, I) (Ho et al. 2020, Algorithm 1),
    optionally Min-SNR-gamma weighted."""

    def __init__(self, config, schedule):
        self.schedule, self.prediction, self.gamma = schedule, config.prediction, config.train.min_snr_gamma

    def draw(self, batch_size: int, shape, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        t = torch.randint(0, self.schedule.num_timesteps, (batch_size,), generator=generator)
        return t, torch.randn((batch_size, *shape), generator=generator)

    def log_snr(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """lambda = log(alpha_bar / (1 - alpha_bar)) at n training times as draw() picks them; float64 [n]."""
        ab = self.schedule.alpha_bar_at(self.draw(n, (), generator)[0]).double()
        return torch.log(ab) - torch.log1p(-ab)

    def loss(self, model, x0, draws, cond) -> torch.Tensor:
        t, eps = draws
        loss = simple_loss(model, self.schedule, self.prediction, x0, t, eps, cond).float()
        if self.gamma > 0:
            loss = loss * min_snr_weight(self.prediction, self.schedule.alpha_bar_at(t),
                                         self.gamma).to(loss.device, loss.dtype)
        return loss


class PathObjective:
    """Flow matching and EDM on a path of path.py (Kingma & Gao 2023: a path, a parametrization, a time
    distribution, a weight). flow: tau ~ uniform or logit-normal(loc, scale) (Esser et al. 2024, eq. 19), then
    SD3's shift; x = (1 - tau) x0 + tau eps; target u = eps - x0 (Liu et al. 2023, eq. 1; Lipman et al. 2023).
    edm: ln sigma ~ N(P_mean, P_std^2); x = x0 + sigma eps; the network sees c_in x and the target of its F is
    (x0 - c_skip x) / c_out, where EDM's weight lambda(sigma) c_out^2 = 1 leaves a plain MSE (Karras et al. 2022,
    eq. 8 and Table 1). draw() returns per-sample (alpha, sigma, network time, input scale) and eps."""

    def __init__(self, config, path):
        self.path, self.prediction, self.objective = path, config.prediction, config.objective
        self.dist, self.loc, self.scale = config.objective.time_params()
        # reflow (Liu et al. 2023): the source draws (sample, noise) pairs as x0 [B, 2, ...]; no fresh eps
        self.paired = config.reflowed
        o = config.objective
        self.foreground = (o.foreground_weight, tuple(o.foreground_band)) if o.foreground_weight > 0 else None

    def draw(self, batch_size: int, shape, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        if self.dist == "uniform":
            u = torch.rand(batch_size, generator=generator, dtype=F64)
        else:
            u = self.loc + self.scale * torch.randn(batch_size, generator=generator, dtype=F64)
        if self.objective.name == "flow":
            tau = shift_time(u if self.dist == "uniform" else torch.sigmoid(u), self.objective.shift)
            alpha, sigma, t_net, c_in = 1.0 - tau, tau, 1000.0 * tau, torch.ones_like(tau)
        else:  # edm: lognormal sigma
            sigma = torch.exp(u)
            alpha, t_net = torch.ones_like(sigma), self.path.t_at_sigma(sigma)
            c_in = 1.0 / torch.sqrt(sigma**2 + self.path.sigma_data**2)
        if self.paired:
            return alpha, sigma, t_net, c_in
        return alpha, sigma, t_net, c_in, torch.randn((batch_size, *shape), generator=generator)

    def log_snr(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """lambda = 2 log(alpha / sigma) at n training times as draw() picks them; float64 [n] (+-inf at tau = 0, 1)."""
        alpha, sigma = self.draw(n, (), generator)[:2]
        return 2 * (torch.log(alpha) - torch.log(sigma))

    def loss(self, model, x0, draws, cond) -> torch.Tensor:
        if self.paired:
            (alpha, sigma, t_net, c_in), x0, eps = draws, x0[:, 0], x0[:, 1]
        else:
            alpha, sigma, t_net, c_in, eps = draws

        def col(v):
            return v.to(x0.device, x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))

        x = col(alpha) * x0 + col(sigma) * eps
        t = t_net.to(x0.device, x0.dtype)
        out = model(col(c_in) * x, t) if cond is None else model(col(c_in) * x, t, cond)
        sd = getattr(self.path, "sigma_data", None)
        err = (out - target_on_path(self.prediction, x0, eps, x, col(sigma), sd)).float().square()
        if self.foreground is not None:  # flow on pixels: sigma is the path time tau
            return foreground_weighted(err, x0, sigma, *self.foreground)
        return err.flatten(1).mean(1)


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
    if isinstance(config.network, VAEConfig):
        return VAEObjective(config.network)
    return DiffusionObjective(config, schedule) if config.objective.name == "ddpm" else PathObjective(config, schedule)
