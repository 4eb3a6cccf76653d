"""diffkit: diffusion generative models from first principles on PyTorch."""

from .denoiser import Denoiser
from .errors import DiffkitError
from .schedule import NoiseSchedule, rescale_zero_terminal_snr
from .version import __version__

__all__ = ["Denoiser", "DiffkitError", "NoiseSchedule", "rescale_zero_terminal_snr", "__version__"]
