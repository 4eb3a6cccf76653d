"""The flow objective's foreground weight (--foreground-weight W --foreground-band LO,HI): the per-pixel weight by
hand, the objective's loss with and without it, the flags into config.json and back."""

import json

import pytest
import torch

from diffkit.config import RunConfig
from diffkit.path import path_for
from diffkit.runs.recipes import train_config
from diffkit.training.loss import foreground_weighted
from diffkit.training.objectives import objective_for


def test_the_weight_by_hand():
    """One 2x2 image, two channels: a pixel is foreground where any channel is above -0.9. Inside the band the
    foreground pixels weigh 1 + W and the image's loss is divided by its mean weight; outside it is the plain mean."""
    x0 = torch.full((2, 2, 2, 2), -1.0)
    x0[:, 1, 0, 1] = 0.5      # foreground through the second channel only
    x0[:, 0, 1, 1] = -0.85    # just above the threshold
    err = torch.arange(16, dtype=torch.float32).reshape(2, 2, 2, 2)
    tau = torch.tensor([0.5, 0.9], dtype=torch.float64)
    got = foreground_weighted(err, x0, tau, 4.0, (0.4, 0.8))
    w = torch.tensor([[1.0, 5.0], [1.0, 5.0]])
    inside = (err[0] * w).mean() / w.mean()
    assert torch.allclose(got, torch.stack([inside, err[1].mean()]))
    assert abs(float(got[0]) - 23 / 6) < 1e-6  # (0 + 5 + 2 + 15 + 4 + 25 + 6 + 35) / 8 over a mean weight of 3
    edge = foreground_weighted(err, x0, torch.tensor([0.4, 0.8], dtype=torch.float64), 4.0, (0.4, 0.8))
    assert torch.allclose(edge, torch.stack([inside, (err[1] * w).mean() / w.mean()]))  # the band is closed


def _flow_loss(config, model, x0):
    """The objective's per-image loss on one fixed draw of times and noise; the drawn times tau and noise eps."""
    objective = objective_for(config, path_for("flow"))
    draws = objective.draw(x0.shape[0], x0.shape[1:], torch.Generator().manual_seed(0))
    return objective.loss(model, x0, draws, None), draws[1], draws[-1]


def test_the_objective_weighs_only_when_asked():
    """A flow config with weight 0 gives the plain per-image MSE; with a weight, the loss moves exactly for the
    images that hold foreground and whose drawn time lies in the band."""
    plain = train_config({"data": "mnist5k"})
    weighted = train_config({"data": "mnist5k", "foreground_weight": 4.0, "foreground_band": (0.3, 0.7)})
    x0 = torch.full((64, 1, 6, 6), -1.0)
    x0[:32, :, 2:4, 2:4] = 1.0   # half the batch has a small bright square; the rest is all background

    def model(x, t):
        return x * 0.3  # any fixed function: its error differs between pixels

    a, tau, eps = _flow_loss(plain, model, x0)
    b, _, _ = _flow_loss(weighted, model, x0)
    col = tau.float().reshape(-1, 1, 1, 1)
    x = (1 - col) * x0 + col * eps
    mse = (model(x, None) - (eps - x0)).square().flatten(1).mean(1)
    assert torch.allclose(a, mse, atol=1e-5)   # weight 0: the plain flow-matching MSE
    in_band = (tau >= 0.3) & (tau <= 0.7)
    moved = ~torch.isclose(a, b)
    assert in_band.any() and (~in_band).any()
    assert (moved == (in_band & (torch.arange(64) < 32))).all()


def test_the_flags_round_trip_through_config_json():
    """The weight and band are stored in config.json (format 5) and read back; a version-4 config without them
    reads as no weight."""
    cfg = train_config({"data": "mnist5k", "cond": True, "foreground_weight": 4.0, "foreground_band": (0.35, 0.8)})
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["format_version"] == 5
    assert d["objective"]["foreground_weight"] == 4.0 and d["objective"]["foreground_band"] == [0.35, 0.8]
    back = RunConfig.from_dict(d)
    assert (back.objective.foreground_weight, back.objective.foreground_band) == (4.0, (0.35, 0.8))
    old = json.loads(json.dumps(train_config({"data": "mnist5k", "cond": True}).to_dict()))
    old["format_version"] = 4
    del old["objective"]["foreground_weight"], old["objective"]["foreground_band"]
    assert RunConfig.from_dict(old).objective.foreground_weight == 0.0
    with pytest.raises(Exception, match="foreground"):
        bad = json.loads(json.dumps(cfg.to_dict()))
        bad["objective"]["foreground_band"] = [0.9, 0.1]
        RunConfig.from_dict(bad).validate()
