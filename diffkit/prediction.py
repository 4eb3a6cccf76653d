"""What the network predicts (epsilon, x0, v, the flow velocity or EDM's preconditioned F) and the conversions
between them.

With a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t), x_t = a x0 + s eps:
  v = a eps - s x0                      (Salimans & Ho 2022, sec. 4)
  x0 = (x_t - s eps) / a,  eps = (x_t - a x0) / s
  x0 = a x_t - s v,        eps = s x_t + a v
  score = grad log q(x_t) = -eps / s    (Song et al. 2021; Vincent 2011)
All functions take alpha_bar already broadcastable to x_t (e.g. [B, 1]).

On a path of its own (path.py: x = alpha x0 + sigma eps with any alpha, sigma; *_on_path below):
  flow  u = eps - x0, d x / d tau on the linear path alpha = 1 - tau, sigma = tau (Liu et al. 2023;
        Lipman et al. 2023):  x0 = x - sigma u,  eps = x + alpha u
  edm   D(x) = c_skip x + c_out F(c_in x, c_noise) with c_skip = sd^2 / (sigma^2 + sd^2),
        c_out = sigma sd / sqrt(sigma^2 + sd^2), sd = sigma_data (Karras et al. 2022, Table 1; alpha = 1):
        x0 = D,  eps = (x - D) / sigma; the regression target of F is (x0 - c_skip x) / c_out, under which
        EDM's weight lambda(sigma) = 1 / c_out^2 makes the loss a plain MSE on F (eq. 8)
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from .errors import ConfigError, choice_error

Prediction = Literal["epsilon", "x0", "v", "flow", "edm"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)
# what makes sense on each path (the first is the path's default)
PATH_PREDICTIONS = {"vp": ("epsilon", "x0", "v"), "flow": ("flow", "x0"), "edm": ("edm", "x0", "epsilon")}


def check_prediction_on(path: str, prediction: str, objective: str) -> str:
    """A ConfigError unless `prediction` makes sense on the objective's path."""
    allowed = PATH_PREDICTIONS[path]
    if prediction not in allowed:
        raise ConfigError(f"--prediction {prediction} does not apply to the {objective} objective; it takes "
                          f"{', '.join(allowed)} (default {allowed[0]})")
    return prediction


def check_prediction(name: str) -> str:
    if name not in PREDICTIONS:
        raise choice_error("prediction type", name, PREDICTIONS)
    return name


def x0_from_eps(x_t, eps, alpha_bar):
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def eps_from_x0(x_t, x0, alpha_bar):
    return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def v_from_eps_x0(eps, x0, alpha_bar):
    return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0


def x0_from_v(x_t, v, alpha_bar):
    return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * v


def eps_from_v(x_t, v, alpha_bar):
    return (1 - alpha_bar).sqrt() * x_t + alpha_bar.sqrt() * v


def score_from_eps(eps, alpha_bar):
    """Score of the noised marginal: -eps / sigma_t."""
    return -eps / (1 - alpha_bar).sqrt()


def eps_from_score(score, alpha_bar):
    return -score * (1 - alpha_bar).sqrt()


def target(prediction: Prediction, x0, eps, alpha_bar):
    """The regression target of the network for a prediction type (L_simple)."""
    if prediction == "epsilon":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_from_eps_x0(eps, x0, alpha_bar)
    raise choice_error("prediction type", prediction, PREDICTIONS)


def to_eps_x0(prediction: Prediction, output, x_t, alpha_bar):
    """Convert a network output of the given type to (eps_hat, x0_hat)."""
    if prediction == "epsilon":
        return output, x0_from_eps(x_t, output, alpha_bar)
    if prediction == "x0":
        return eps_from_x0(x_t, output, alpha_bar), output
    if prediction == "v":
        return eps_from_v(x_t, output, alpha_bar), x0_from_v(x_t, output, alpha_bar)
    raise choice_error("prediction type", prediction, PREDICTIONS)


def to_x0(prediction: Prediction, output, x_t, alpha_bar):
    """x0_hat alone from a network output (what the data-prediction solvers need)."""
    if prediction == "x0":
        return output
    if prediction == "epsilon":
        return x0_from_eps(x_t, output, alpha_bar)
    if prediction == "v":
        return x0_from_v(x_t, output, alpha_bar)
    raise choice_error("prediction type", prediction, PREDICTIONS)


# --- on a path of its own (path.py) ---------------------------------------------------------------------------

def to_boundary(eps_hat, x0_hat, alpha_bar, s_min: float):
    """A consistency model's (eps_hat, f) from a denoiser's: f = x0_hat + s_min eps_hat, the DDIM step to the VE level
    s_min (= c_skip y + c_out x0_hat with y = x_t / alpha, c_skip = s_min / s, c_out = 1 - s_min / s, s = sigma /
    alpha), so f(y, s_min) = y (Song et al. 2023, sec. 3); eps_hat becomes the noise that f and x_t imply."""
    s = ((1 - alpha_bar) / alpha_bar).sqrt()
    return eps_hat * (1 - s_min / s), x0_hat + s_min * eps_hat


def edm_scalings(sigma, sigma_data: float):
    """(c_skip, c_out) of EDM's preconditioning (Karras et al. 2022, Table 1)."""
    var = sigma**2 + sigma_data**2
    return sigma_data**2 / var, sigma * sigma_data / torch.sqrt(var)


def to_eps_x0_on_path(prediction: Prediction, output, x, alpha, sigma, sigma_data: float | None = None):
    """(eps_hat, x0_hat) from a network output on a path x = alpha x0 + sigma eps (alpha, sigma broadcastable)."""
    if prediction == "flow":
        return x + alpha * output, x - sigma * output
    if prediction == "edm":
        c_skip, c_out = edm_scalings(sigma, sigma_data)
        x0 = c_skip * x + c_out * output
        return (x - alpha * x0) / sigma, x0
    if prediction == "epsilon":
        return output, (x - sigma * output) / alpha
    if prediction == "x0":
        return (x - alpha * output) / sigma, output
    raise choice_error("prediction type on this path", prediction, ("flow", "edm", "epsilon", "x0"))


def target_on_path(prediction: Prediction, x0, eps, x, sigma, sigma_data: float | None = None):
    """The regression target of the network on a path (x = alpha x0 + sigma eps)."""
    if prediction == "flow":
        return eps - x0
    if prediction == "edm":
        c_skip, c_out = edm_scalings(sigma, sigma_data)
        return (x0 - c_skip * x) / c_out
    if prediction == "epsilon":
        return eps
    if prediction == "x0":
        return x0
    raise choice_error("prediction type on this path", prediction, ("flow", "edm", "epsilon", "x0"))
