"""The lab's request bodies: every field bounded, so a bad input is a 422 with one sentence."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
POINT_SETS = ("spiral", "circle", "moons", "circles", "swissroll", "gaussians8", "checkerboard", "shapes3")
IMAGE_SETS = ("digits", "mnist5k", "shapes")
SCHEDULES = ("linear", "cosine", "sigmoid", "scaled_linear")


class SampleRequest(BaseModel):
    run: str = Field(pattern=NAME, description="a run in the runs directory")
    sampler: Literal["ddpm", "ddim", "dpmpp-2m", "dpmpp-3m", "dpmpp-2m-sde", "euler", "heun", "euler-a"] = "ddim"
    steps: int = Field(20, ge=1, le=200)
    n: int = Field(500, ge=1, le=5000, description="points (2-D) or images (at most 64 are kept per step)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    cls: int | None = Field(None, ge=0, le=999, description="class id (conditional runs)")
    guidance: float = Field(1.0, ge=0.0, le=20.0)
    trajectory: bool = True


class GuidanceRequest(BaseModel):
    run: str = Field(pattern=NAME)
    cls: int = Field(ge=0, le=999)
    w: float = Field(ge=0.0, le=20.0)
    n: int = Field(200, ge=4, le=2000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    steps: int = Field(20, ge=2, le=100)


class TrainRequest(BaseModel):
    name: str = Field(pattern=NAME, description="the new run's name")
    data: Literal[POINT_SETS + IMAGE_SETS] = "spiral"
    steps: int = Field(1000, ge=10, le=20000)
    schedule: Literal[SCHEDULES] = "linear"
    prediction: Literal["epsilon", "x0", "v"] = "v"
    timesteps: int = Field(1000, ge=10, le=4000)
    cond: bool = False


class SamplersRequest(BaseModel):
    run: str = Field(pattern=NAME)
    nfe: list[Annotated[int, Field(ge=2, le=100)]] = Field([5, 10, 20, 50], min_length=1, max_length=4)
    n: int = Field(2000, ge=100, le=4000)


class ScoreRequest(BaseModel):
    run: str = Field(pattern=NAME)
    t: int = Field(100, ge=0, le=3999, description="the step whose score field is drawn (below the run's T)")
    n: int = Field(300, ge=10, le=2000, description="noisy points that carry an arrow")
    seed: int = Field(0, ge=0, le=2**31 - 1)


class PromptRequest(BaseModel):
    run: str = Field(pattern=NAME, description="a text run (trained with --text) in the runs directory")
    prompt: str = Field(max_length=2000, description="what to draw, e.g. 'a small blue triangle at the bottom right'")
    w: float = Field(5.0, ge=0.0, le=20.0, description="guidance scale")
    n: int = Field(16, ge=1, le=36)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    steps: int = Field(20, ge=2, le=100)
