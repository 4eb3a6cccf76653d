"""The demos (`diffkit demo`): points.py trains the spiral and draws its story; images.py trains a
class-conditional image run, samples it with guidance, scores it and draws the image story."""

from .images import run_image_demo
from .points import run_demo

__all__ = ["run_demo", "run_image_demo"]
