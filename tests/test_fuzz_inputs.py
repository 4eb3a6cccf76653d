"""A bounded property-based fuzz of CLI arguments and of data files: the CLI answers with exit 0 or one `error:`
sentence and exit 2, a loader with data or one DataError sentence; never a traceback, never a hang. (The named
bad inputs, each with its sentence, are tests/test_bad_inputs.py's catalogue.)
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_bad_inputs import TINY_UNET

from diffkit.cli import main
from diffkit.errors import DiffkitError


@pytest.fixture(scope="module")
def world(tiny_run, tmp_path_factory):
    """The shared tiny circle run, a file of its samples and a scratch folder."""
    root = tmp_path_factory.mktemp("fuzz")
    samples = root / "samples.npy"
    assert main(["sample", "--run", str(tiny_run), "--n", "200", "--out", str(samples), "--quiet"]) == 0
    return {"tmp": root, "run": tiny_run, "samples": samples}


FLAGS = {
    "train": ["--data", "--steps", "--batch-size", "--schedule", "--timesteps", "--prediction", "--cond", "--p-uncond",
              "--lr", "--seed", "--flip", "--channels", "--channel-mult", "--attention", "--dropout", "--resume",
              "--overwrite", "--checkpoint-every", "--keep-checkpoints", "--zero-terminal-snr"],
    "sample": ["--n", "--sampler", "--steps", "--spacing", "--eta", "--snr", "--variance", "--class", "--guidance",
               "--guidance-interval", "--seed", "--sigma-min", "--sigma-max", "--corrector-steps", "--no-clip"],
    "eval": ["--samples", "--data", "--n-ref", "--class", "--seed", "--json"],
}
VALUES = st.one_of(st.sampled_from(["0", "-1", "1", "3", "1e309", "nan", "inf", "", "circle", "digits", "spiral",
                                    "ddim", "dpmpp-2m", "heun", "cosine", "v", "1,2", "0.5", "a,b", "--",
                                    "shapes3", "2,1", "all"]),
                   st.text(max_size=8), st.integers(-10**6, 10**6).map(str))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(command=st.sampled_from(sorted(FLAGS)), picks=st.lists(st.tuples(st.integers(0, 30), VALUES), max_size=5))
def test_fuzz_cli_arguments(world, capsys, command, picks):
    """Random flags and values: the CLI answers with exit 0 or `error:` + exit 2, never a traceback. Commands
    that would run are kept tiny (few steps / samples, a fresh output path)."""
    flags = FLAGS[command]
    argv = [command]
    for i, value in picks:
        flag = flags[i % len(flags)]
        argv += [flag] if flag in ("--cond", "--flip", "--resume", "--overwrite", "--json", "--no-clip",
                                   "--zero-terminal-snr") else [flag, value]
    fresh = world["tmp"] / "fuzz"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    if command == "train":
        argv += ["--out", str(fresh / "r"), "--steps", "2", "--timesteps", "50", "--quiet"]
        if "--data" in argv and argv[argv.index("--data") + 1] == "digits":
            argv += TINY_UNET
    elif command == "sample":
        argv += ["--run", str(world["run"]), "--out", str(fresh / "s.npy"), "--n", "4", "--quiet"]
    else:
        argv = [*argv, "--samples", str(world["samples"])] if "--samples" not in argv else argv
        argv += ["--n-ref", "50"]
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 0 or (code == 2 and [ln for ln in err.splitlines() if ln.startswith("error: ")]), (argv, err)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(suffix=st.sampled_from([".csv", ".npy", ".npz"]), blob=st.one_of(
    st.binary(max_size=300),
    st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=4),
                                st.integers(-3, 5).map(str)), min_size=1, max_size=4), max_size=30)
    .map(lambda rows: "\n".join(",".join(r) for r in rows).encode())))
def test_fuzz_point_data_files(world, suffix, blob):
    """Arbitrary bytes or CSV-ish text as a point file: loaded as points, or one DataError sentence."""
    from diffkit.data.points import load_labeled_file

    path = world["tmp"] / f"fuzz{suffix}"
    path.write_bytes(blob)
    try:
        x, y = load_labeled_file(path)
    except DiffkitError as e:
        assert "\n" not in str(e)
        return
    assert x.ndim == 2 and x.shape[1] == 2 and np.isfinite(x).all() and x.dtype == np.float32
    assert y is None or (y.shape == (len(x),) and y.min() >= 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(blob=st.binary(max_size=200), size=st.integers(1, 12))
def test_fuzz_image_folders(world, blob, size):
    """A folder of one valid image and one arbitrary file named .png: a DataError sentence or images."""
    from diffkit.data.images import load_images

    d = world["tmp"] / "fuzzimg"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    for k in range(5):
        Image.fromarray(np.full((size, size), 40 * k, np.uint8)).save(d / f"ok{k}.png")
    (d / "x.png").write_bytes(blob)
    try:
        data = load_images(str(d))
    except DiffkitError as e:
        assert "\n" not in str(e)
        return
    assert data.train.ndim == 4 and 0 <= data.train.min() and data.train.max() <= 1
