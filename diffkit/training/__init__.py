"""Training: per-sample loss, EMA, objectives and the Trainer loop (checkpoints are written through
diffkit.store)."""

from .ema import EMA
from .loss import simple_loss
from .trainer import Trainer

__all__ = ["EMA", "Trainer", "simple_loss"]
