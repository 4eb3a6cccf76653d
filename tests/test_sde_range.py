"""dpmpp-2m-sde's s_tmax (fresh noise only on steps from levels sigma_ve <= s_tmax) and a run's own sampler options
(config.sampling.options): shapes' default runs record dpmpp-2m-sde at 20 with s_tmax 3 (presets.IMAGE_SAMPLERS)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_cli import assert_user_error
from test_cli import run as cli
from test_fast_samplers import F64, oracle

from diffkit import DiffkitError, rescale_zero_terminal_snr
from diffkit.config import RunConfig
from diffkit.runs import load_run, sample_run
from diffkit.runs.distill import distill_config
from diffkit.runs.edit import edit_run
from diffkit.runs.interpolate import interpolate_run
from diffkit.runs.pipeline import deterministic_own, own_options
from diffkit.runs.recipes import train_config
from diffkit.runs.reflow import reflow_config
from diffkit.sampling import sample, sampler_grid
from diffkit.sampling.common import grid_levels
from diffkit.store.manifest import sha256
from diffkit.store.rundir import read_config, save_config


def trajectory(schedule, x, **options):
    """Every step's x of dpmpp-2m-sde (or dpmpp-2m when options name it) from x on the default 12-step grid."""
    name = options.pop("name", "dpmpp-2m-sde")
    xs = []
    sample(oracle(schedule), x.clone(), name, 12, generator=torch.Generator().manual_seed(3),
           callback=lambda r: xs.append(r.x.clone()) and False, **options)
    return xs


def test_noise_only_from_the_levels_at_or_below_s_tmax(linear):
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    levels = [lv.sigma_ve for lv in grid_levels(linear, sampler_grid(linear, "dpmpp-2m-sde", 12))][:-1]
    s_tmax = levels[5]  # steps 0-4 start above it: deterministic, as dpmpp-2m's; step 5 on get fresh noise
    ode, mixed, sde = (trajectory(linear, x, name="dpmpp-2m"), trajectory(linear, x, s_tmax=s_tmax),
                       trajectory(linear, x))
    for i in range(5):
        assert torch.allclose(mixed[i], ode[i], atol=1e-12), i
    assert not torch.allclose(mixed[5], ode[5], atol=1e-3)
    assert not torch.allclose(sde[0], ode[0], atol=1e-3)  # without s_tmax the first step is stochastic already
    below = trajectory(linear, x, s_tmax=levels[-1] / 2)  # below every level: dpmpp-2m itself
    assert torch.allclose(below[-1], ode[-1], atol=1e-12)
    above = trajectory(linear, x, s_tmax=levels[0] * 2)  # above every (finite) level: the plain SDE sampler
    assert torch.equal(above[-1], sde[-1])


def test_an_infinite_first_level_and_eta_0(linear):
    """On a zero-terminal-SNR grid the first level is sigma_ve = inf: s_tmax inf is None (noise on every step), a
    finite s_tmax makes that first step deterministic; eta 0 with any s_tmax is dpmpp-2m."""
    zero = rescale_zero_terminal_snr(linear)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert grid_levels(zero, sampler_grid(zero, "dpmpp-2m-sde", 12))[0].sigma_ve == float("inf")
    every, inf, finite = trajectory(zero, x), trajectory(zero, x, s_tmax=float("inf")), trajectory(zero, x, s_tmax=1e6)
    assert torch.equal(every[-1], inf[-1]) and bool(torch.isfinite(finite[-1]).all())
    assert not torch.allclose(every[0], finite[0], atol=1e-3)
    ode = trajectory(linear, x, name="dpmpp-2m")
    assert torch.allclose(trajectory(linear, x, eta=0.0, s_tmax=1.0)[-1], ode[-1], atol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), True, "3"])
def test_bad_s_tmax_is_refused_by_name(linear, bad):
    with pytest.raises(DiffkitError, match="s_tmax"):
        sample(oracle(linear), torch.zeros(4, 2, dtype=F64), "dpmpp-2m-sde", 5, s_tmax=bad,
               generator=torch.Generator().manual_seed(0))


def test_shapes_default_runs_record_their_sampler():
    shapes = train_config({"data": "shapes", "cond": True}).sampling
    assert (shapes.sampler, shapes.steps, shapes.options) == ("dpmpp-2m-sde", 20, {"s_tmax": 3.0})
    digits = train_config({"data": "digits", "cond": True}).sampling
    assert (digits.sampler, digits.steps, digits.options) == ("dpmpp-2m", 20, {})
    ddpm = train_config({"data": "shapes", "cond": True, "objective": "ddpm"}).sampling  # not the measured recipe
    assert (ddpm.sampler, ddpm.options) == ("dpmpp-2m", {})
    # the record survives config.json, and an older config without options reads as none
    d = train_config({"data": "shapes", "cond": True}).to_dict()
    assert RunConfig.from_dict(json.loads(json.dumps(d))).sampling.options == {"s_tmax": 3.0}
    del d["sampling"]["options"]
    assert RunConfig.from_dict(d).sampling.options == {}


@pytest.mark.parametrize("sampling, match", [({"options": {"s_tmax": "3"}}, "map option names to numbers"),
                                             ({"options": [3]}, "map option names to numbers"),
                                             ({"sampler": None, "options": {"s_tmax": 3.0}}, "set sampling.sampler")])
def test_bad_recorded_options_are_refused(sampling, match):
    d = train_config({"data": "shapes", "cond": True}).to_dict()
    d["sampling"].update(sampling)
    with pytest.raises(DiffkitError, match=match):
        RunConfig.from_dict(d)


@pytest.fixture(scope="module")
def sde_run(tiny_run, tmp_path_factory):
    """The shared tiny circle run, copied, with dpmpp-2m-sde at 6 steps and s_tmax 0.5 recorded as its own."""
    out = tmp_path_factory.mktemp("own") / "run"
    shutil.copytree(tiny_run, out)
    config = read_config(out)
    config.sampling = replace(config.sampling, sampler="dpmpp-2m-sde", steps=6, options={"s_tmax": 0.5})
    save_config(out, config)
    manifest = json.loads((out / "manifest.json").read_text())  # the edited config's checksum, as training writes it
    manifest["files"]["config.json"] = sha256((out / "config.json").read_bytes())
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_a_run_samples_with_its_own_options(sde_run):
    run = load_run(sde_run)
    assert own_options(run.config, "dpmpp-2m-sde") == {"s_tmax": 0.5} and own_options(run.config, "dpmpp-2m") == {}
    own = sample_run(run, 64, seed=1)
    assert np.array_equal(own, sample_run(run, 64, "dpmpp-2m-sde", 6, seed=1, s_tmax=0.5))
    assert not np.allclose(own, sample_run(run, 64, "dpmpp-2m-sde", 6, seed=1, s_tmax=50.0), atol=1e-3)  # overridden
    sample_run(run, 8, "dpmpp-2m", 6, seed=1)  # another sampler does not get them (it would refuse s_tmax)
    points = sample_run(run, 16, "dpmpp-2m", 6, seed=5)
    edited = edit_run(run, points, strength=0.6, seed=2)  # editing takes them too, and lets them be overridden
    assert np.array_equal(edited, edit_run(run, points, strength=0.6, seed=2, sampler="dpmpp-2m-sde", s_tmax=0.5))
    assert not np.allclose(edited, edit_run(run, points, strength=0.6, seed=2, s_tmax=50.0), atol=1e-3)


def test_paths_that_need_one_sample_per_noise_take_dpmpp_2m_instead(sde_run):
    """An interpolation, an exported plan and a reflowed run sample deterministically: dpmpp-2m at the run's steps
    in place of a stochastic own sampler (deterministic_own); a student keeps its own (consistency: refused by
    export, as before); a distilled student records no options."""
    run = load_run(sde_run)
    assert deterministic_own(run.config) == ("dpmpp-2m", 6)
    line = interpolate_run(run, 4, seeds=(0, 1))
    assert np.array_equal(line, interpolate_run(run, 4, seeds=(0, 1), sampler="dpmpp-2m", steps=6))
    reflowed = reflow_config(sde_run, pairs=64)
    assert (reflowed.sampling.sampler, reflowed.sampling.steps, reflowed.sampling.options) == ("dpmpp-2m", 6, {})
    student = distill_config(sde_run, method="consistency", steps=2)
    assert (student.sampling.sampler, student.sampling.options) == ("consistency", {})
    assert deterministic_own(student) == ("consistency", 2)


def test_the_cli_takes_s_tmax_and_the_sidecar_records_the_options(sde_run, tmp_path, capsys):
    out = tmp_path / "a.npy"
    code, _, err = cli(["sample", "--run", sde_run, "--n", "16", "--seed", "2", "--out", out, "--quiet"], capsys)
    assert code == 0, err
    assert json.loads(out.with_suffix(".json").read_text())["options"] == {"s_tmax": 0.5}
    given = tmp_path / "b.npy"
    code, _, err = cli(["sample", "--run", sde_run, "--n", "16", "--seed", "2", "--out", given, "--s-tmax", "2",
                        "--quiet"], capsys)
    assert code == 0, err
    assert json.loads(given.with_suffix(".json").read_text())["options"] == {"s_tmax": 2.0}
    unlimited = tmp_path / "e.npy"  # inf: every step; recorded as null (strict JSON, the same meaning)
    code, _, err = cli(["sample", "--run", sde_run, "--n", "16", "--out", unlimited, "--s-tmax", "inf", "--quiet"],
                       capsys)
    assert code == 0, err
    assert json.loads(unlimited.with_suffix(".json").read_text(), parse_constant=float)["options"] == {"s_tmax": None}
    other = tmp_path / "d.npy"  # another sampler: none of the run's options
    code, _, err = cli(["sample", "--run", sde_run, "--n", "16", "--out", other, "--sampler", "dpmpp-2m", "--quiet"],
                       capsys)
    assert code == 0, err
    assert json.loads(other.with_suffix(".json").read_text())["options"] == {}
    bad = tmp_path / "c.npy"
    assert_user_error(*cli(["sample", "--run", sde_run, "--n", "16", "--out", bad, "--s-tmax", "0"], capsys)[::2],
                      "--s-tmax must be a number > 0")
    assert not bad.exists()


def test_onnx_export_of_a_run_whose_own_sampler_is_stochastic_plans_dpmpp_2m(sde_run, tmp_path):
    from diffkit.runs.export import export_onnx

    plan = export_onnx(sde_run, tmp_path / "onnx")
    assert (plan["sampler"], plan["sampler_steps"]) == ("dpmpp-2m", 6)  # its steps, the deterministic sampler
