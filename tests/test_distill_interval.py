"""Where a student's folded-in guidance applies: the teacher's guidance interval clipped to the levels its
reference sampler (dpmpp-2m) calls the network at, so the student learns the guided ODE that sampler solves."""

import contextlib
import io
import json

import numpy as np
import pytest

from diffkit.cli import main
from diffkit.config import RunConfig
from diffkit.errors import DiffkitError
from diffkit.path import EDMPath, FlowPath
from diffkit.runs import distill_config, load_run, sample_run
from diffkit.runs.distill import folded_interval
from diffkit.runs.teachers import distill_objective
from diffkit.sampling import sampler_grid
from diffkit.sampling.common import levels
from diffkit.sampling.grids import ODE_SIGMA_MAX
from diffkit.schedule import NoiseSchedule


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("interval") / "teacher"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", "--data", "digits", "--cond", "--out", str(out), "--steps", "8", "--batch-size", "16",
                     "--channels", "8", "--channel-mult", "1,2", "--attention", "", "--quiet"]) == 0
    return out


def test_the_interval_is_clipped_to_the_reference_samplers_top_level():
    flow, vp, edm = FlowPath(), NoiseSchedule.from_name("linear"), EDMPath()
    clipped = [4.0, pytest.approx(ODE_SIGMA_MAX, rel=1e-5)]
    assert folded_interval([4.0, 80.0], flow) == folded_interval([4.0, 80.0], vp) == clipped
    assert folded_interval([4.0, 80.0], edm) == clipped
    assert ODE_SIGMA_MAX == 10.0 and folded_interval([4.0, 80.0], flow)[1] >= ODE_SIGMA_MAX
    for path in (flow, vp, edm):
        assert folded_interval([0.2, 1.0], path) is None  # wholly below: the teacher's own
        assert folded_interval(None, path) is None  # guided everywhere: the teacher's own
        assert folded_interval([12.0, 80.0], path) is None  # wholly above: the teacher's own
    assert folded_interval([4.0, 200.0], flow) == clipped  # the flow's first call is at sigma = inf: unguided


def test_the_reference_sampler_never_calls_the_network_between_the_clip_and_the_top():
    """Why the clip changes nothing the reference does: dpmpp-2m's levels after its first lie at or below
    ODE_SIGMA_MAX at every step count; the first is ODE_SIGMA_MAX itself or the path's top (80 or above)."""
    for schedule in (NoiseSchedule.from_name("cosine"), NoiseSchedule.from_name("linear"), FlowPath(), EDMPath()):
        for steps in (4, 10, 20, 50):
            sigmas = [lv.sigma_ve for lv in levels(schedule, sampler_grid(schedule, "dpmpp-2m", steps).tolist())]
            assert max(sigmas[1:]) <= ODE_SIGMA_MAX * (1 + 1e-6), (schedule, steps)
            assert sigmas[0] >= 80 or abs(sigmas[0] - ODE_SIGMA_MAX) < 1e-6, (schedule, steps)


def test_a_guided_student_records_the_clipped_interval_and_its_teacher_guides_there(teacher, tmp_path):
    t_cfg = RunConfig.from_dict(json.loads((teacher / "config.json").read_text()))
    assert t_cfg.sampling.guidance_interval == (4.0, 80.0)  # the digits preset: guided at high noise only
    for method in ("progressive", "consistency"):
        cfg = distill_config(teacher, method=method, guidance=3.0)
        assert cfg.parent.guidance_interval == [4.0, pytest.approx(10.0, rel=1e-5)]
        assert cfg.sampling.guidance_interval == (4.0, 80.0)  # the student's own field, as its teacher's
        objective = distill_objective(cfg)
        guided = getattr(objective, "first_teacher", None) or objective.teacher
        assert guided.guidance_scale == 3.0 and guided.guidance_interval == (4.0, pytest.approx(10.0, rel=1e-5))
    assert distill_config(teacher, method="progressive").parent.guidance_interval is None  # w = 1: nothing folded
    ranged = distill_config(teacher, method="progressive", guidance_range="1,4")
    assert ranged.parent.guidance_interval == [4.0, pytest.approx(10.0, rel=1e-5)]
    assert ranged.sampling.guidance_interval is None  # it reads w: every jump takes it, wherever it starts
    # the guidance stage reads it too
    assert distill_objective(ranged).guided.interval == (4.0, pytest.approx(10.0, rel=1e-5))


def test_the_clip_leaves_the_reference_samples_as_they_are(teacher):
    run = load_run(teacher)
    labels = np.arange(8) % 10
    ref = sample_run(run, 8, "dpmpp-2m", 20, seed=1, cond=labels, guidance=3.0)
    folded = tuple(distill_config(teacher, guidance=3.0).parent.guidance_interval)
    clipped = sample_run(run, 8, "dpmpp-2m", 20, seed=1, cond=labels, guidance=3.0, guidance_interval=folded)
    assert np.array_equal(ref, clipped)
    # ... where ddim over the capped full range does call the network in (10, 80] and so differs
    full = sample_run(run, 8, "ddim", 20, seed=1, cond=labels, guidance=3.0)
    assert not np.array_equal(full, sample_run(run, 8, "ddim", 20, seed=1, cond=labels, guidance=3.0,
                                               guidance_interval=folded))


def test_a_student_config_with_a_bad_interval_is_refused(teacher):
    cfg = distill_config(teacher, method="progressive", guidance=3.0).to_dict()
    cfg["parent"]["guidance_interval"] = [10.0, 4.0]
    with pytest.raises(DiffkitError, match="parent.guidance_interval"):
        RunConfig.from_dict(cfg).validate()


def test_a_student_that_reads_w_takes_it_at_every_level_even_where_an_older_record_says_otherwise(teacher):
    """A guidance-range student's jumps learned where the teacher guides; sampling gives it w at every level. Students
    distilled before that rule recorded the teacher's (4, 80], above which their 4-step grid starts (sigma 160) and
    below which it goes on (2.4, 1.0, 0.4), so w never reached them: they read the same at every w."""
    from dataclasses import replace

    from diffkit.nn import registry
    from diffkit.runs.pipeline import make_denoiser

    config = distill_config(teacher, method="progressive", guidance_range="1,4")
    older = replace(config, sampling=replace(config.sampling, guidance_interval=(4.0, 80.0)))
    network = registry.build_network(config.network)
    assert make_denoiser(older, network).guidance_interval is None
    teacher_cfg = load_run(teacher).config  # a run that does not read w keeps its interval
    assert make_denoiser(teacher_cfg, registry.build_network(teacher_cfg.network)).guidance_interval == (4.0, 80.0)
