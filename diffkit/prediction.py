"""What the network predicts (epsilon, x0 or v) and the conversions between them.

With a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t), x_t = a x0 + s eps:
  v = a eps - s x0                      (Salimans & Ho 2022, sec. 4)
  x0 = (x_t - s eps) / a,  eps = (x_t - a x0) / s
  x0 = a x_t - s v,        eps = s x_t + a v
  score = grad log q(x_t) = -eps / s    (Song et al. 2021; Vincent 2011)
All functions take alpha_bar already broadcastable to x_t (e.g. [B, 1]).
"""

from __future__ import annotations

from typing import Literal, get_args


from .errors import choice_error

Prediction = Literal["epsilon", "x0", "v"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)


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
