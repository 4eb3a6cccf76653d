"""Networks only: they map (x_t, t, cond) to a prediction and know nothing of schedules."""

from .embeddings import SinusoidalEmbedding
from .mlp import MLP, MLPConfig

__all__ = ["SinusoidalEmbedding", "MLP", "MLPConfig"]
