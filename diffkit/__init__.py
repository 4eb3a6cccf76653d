"""diffkit: diffusion generative models from first principles on PyTorch."""

__version__ = "0.1.0"

from .denoiser import Denoiser  # noqa: E402
from .errors import DiffkitError  # noqa: E402
from .schedule import NoiseSchedule, rescale_zero_terminal_snr  # noqa: E402

__all__ = ["Denoiser", "DiffkitError", "NoiseSchedule", "rescale_zero_terminal_snr", "__version__"]
