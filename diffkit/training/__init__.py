"""Training: per-sample loss, EMA, checkpoints and the Trainer loop."""

from .checkpoint import load_run, save_model
from .ema import EMA
from .loss import simple_loss
from .trainer import Trainer

__all__ = ["EMA", "Trainer", "load_run", "save_model", "simple_loss"]
