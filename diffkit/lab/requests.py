"""The lab's request bodies: every field bounded, so a bad input is a 422 with one sentence."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from ..prediction import PATH_PREDICTIONS

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
POINT_SETS = ("spiral", "circle", "moons", "circles", "swissroll", "gaussians8", "checkerboard", "shapes3")
IMAGE_SETS = ("digits", "mnist5k", "shapes", "patterns")
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
    data: Literal[POINT_SETS + IMAGE_SETS] | Annotated[str, Field(pattern=r"^drawn-[0-9a-f]{16}$")] = Field(
        "spiral", description="a built-in data set, or drawn points uploaded to /api/data (drawn-KEY)")
    steps: int = Field(1000, ge=10, le=20000)
    objective: Literal["ddpm", "edm", "flow"] = Field("ddpm", description="ddpm (a VP schedule), edm or flow")
    schedule: Literal[SCHEDULES] | None = Field(None, description="ddpm only (default linear)")
    prediction: Literal["epsilon", "x0", "v", "flow", "edm"] | None = Field(
        None, description="what the network predicts; default: the objective's own (v, edm, flow)")
    timesteps: int | None = Field(None, ge=10, le=4000, description="ddpm only (default 1000)")
    cond: bool = False

    @model_validator(mode="after")
    def _fits_objective(self):
        path = {"ddpm": "vp", "edm": "edm", "flow": "flow"}[self.objective]
        if self.prediction is not None and self.prediction not in PATH_PREDICTIONS[path]:
            raise ValueError(f"the {self.objective} objective's network predicts one of "
                             f"{', '.join(PATH_PREDICTIONS[path])}, not {self.prediction}")
        if self.objective != "ddpm" and (self.schedule is not None or self.timesteps is not None):
            raise ValueError(f"schedule and timesteps shape a ddpm schedule; the {self.objective} objective has "
                             "its own path")
        return self


class ReflowRequest(BaseModel):
    name: str = Field(pattern=NAME, description="the new (student) run's name")
    teacher: str = Field(pattern=NAME, description="a trained run in the runs directory")
    pairs: int = Field(4000, ge=100, le=20_000, description="(noise, sample) pairs from the teacher's ODE")
    steps: int = Field(1000, ge=10, le=20000, description="the student's training steps")


class PathsRequest(BaseModel):
    runs: list[Annotated[str, Field(pattern=NAME)]] = Field(min_length=1, max_length=4,
                                                            description="1-4 runs on 2-D data")
    steps: int = Field(8, ge=1, le=100, description="Euler (DDIM) steps along each run's ODE")
    n: int = Field(300, ge=10, le=2000, description="noises (all runs get the same ones)")
    seed: int = Field(0, ge=0, le=2**31 - 1)


COMPARED = ("ddim", "dpmpp-2m", "dpmpp-3m", "euler", "heun")


class SamplersRequest(BaseModel):
    run: str = Field(pattern=NAME)
    nfe: list[Annotated[int, Field(ge=2, le=100)]] = Field([5, 10, 20, 50], min_length=1, max_length=4)
    n: int = Field(2000, ge=100, le=4000)
    samplers: list[Literal[COMPARED]] = Field(list(COMPARED), min_length=1, max_length=5,
                                              description="which samplers (the page asks one at a time)")


class WarmRequest(BaseModel):
    run: str = Field(pattern=NAME, description="a run to load now, so its panel's first draw does not wait for it")


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


class FewStepsRequest(BaseModel):
    run: str = Field(pattern=NAME, description="a distilled student (`diffkit distill`) in the runs directory")
    nfe: int = Field(4, ge=1, le=8, description="network calls per sample, for teacher and student alike")
    n: int = Field(16, ge=1, le=2000, description="points (2-D) or images (at most 64)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    cls: int | None = Field(None, ge=0, le=999, description="class id (default: classes cycled)")


class EditRequest(BaseModel):
    run: str = Field(pattern=NAME, description="an image run in the runs directory")
    index: int = Field(0, ge=0, le=100_000, description="which held-out image of the run's data")
    mask: list[Literal[0, 1]] | None = Field(None, max_length=65_536, description="H x W cells, 1: regenerate")
    strength: float | None = Field(None, ge=0.0, le=1.0, description="img2img's level (default 0.6; 1 with a mask)")
    cls: int | None = Field(None, ge=0, le=999, description="class id to guide towards (class runs)")
    prompt: str | None = Field(None, max_length=300, description="prompt to guide towards (text runs)")
    w: float = Field(3.0, ge=0.0, le=20.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    steps: int = Field(20, ge=1, le=100)
