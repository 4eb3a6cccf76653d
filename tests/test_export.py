"""`diffkit export --format onnx` (runs/export.py): the network through the ONNX exporter, checked with
onnxruntime at several batch sizes, and the exported NumPy + onnxruntime sampler reproducing diffkit's own samples
from the same x_T (<= 1e-3) in a subprocess that cannot import torch; bad exports refused in one sentence."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_cli import run
from test_images_cli import TINY_FLAGS, assert_user_error

from diffkit.cli import main
from diffkit.runs import sample_run

NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['diffkit'] = None; import runpy; "
            "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "digits"
    assert main(["train", "--data", "digits", "--cond", "--out", str(out), "--steps", "30", *TINY_FLAGS]) == 0
    return out


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "flow"
    assert main(["train", "--data", "digits", "--objective", "flow", "--out", str(out), "--steps", "30",
                 *TINY_FLAGS]) == 0
    return out


def sample_without_torch(folder, tmp_path, noise, *flags) -> np.ndarray:
    np.save(tmp_path / "x_T.npy", noise)
    out = tmp_path / "onnx.npy"
    done = subprocess.run([sys.executable, "-c", NO_TORCH, str(folder / "sample.py"), "--noise",
                           str(tmp_path / "x_T.npy"), "--out", str(out), *map(str, flags)],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return np.load(out)


@pytest.mark.parametrize("sampler, steps", [("dpmpp-2m", 8), ("ddim", 8), ("dpmpp-3m", 6)])
def test_exported_class_run_reproduces_diffkit_guided(digits_run, tmp_path, capsys, sampler, steps):
    folder = tmp_path / "onnx"
    code, _out, err = run(["export", "--run", digits_run, "--out", folder, "--sampler", sampler, "--steps", steps],
                         capsys)
    assert code == 0, err
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["onnx_vs_torch"] <= 1e-4 and len(plan["steps"]) == steps
    assert any(s["guided"] for s in plan["steps"]) and not all(s["guided"] for s in plan["steps"])  # the interval
    noise = np.random.default_rng(1).standard_normal((10, 1, 8, 8), dtype=np.float32)
    labels = np.arange(10) % 10
    np.save(tmp_path / "labels.npy", labels)
    theirs = sample_without_torch(folder, tmp_path, noise, "--labels", tmp_path / "labels.npy", "--guidance", 3)
    ours = sample_run(digits_run, 10, sampler, steps, noise=noise, cond=labels.tolist(), guidance=3.0,
                      precision="fp32")
    assert np.abs(theirs - ours).max() <= 1e-3


def test_exported_flow_run_reproduces_diffkit(flow_run, tmp_path, capsys):
    folder = tmp_path / "onnx"
    assert run(["export", "--run", flow_run, "--out", folder], capsys)[0] == 0
    noise = np.random.default_rng(2).standard_normal((6, 1, 8, 8), dtype=np.float32)
    theirs = sample_without_torch(folder, tmp_path, noise)
    ours = sample_run(flow_run, 6, "dpmpp-2m", 20, noise=noise, precision="fp32")
    assert np.abs(theirs - ours).max() <= 1e-3 and ours.std() > 0.01


def test_exported_latent_run_decodes_through_its_vae_without_torch(digits_vae, tmp_path, capsys):
    r = tmp_path / "latent"
    assert main(["train", "--data", "digits", "--latent", str(digits_vae), "--cond", "--out", str(r), "--steps", "8",
                 "--batch-size", "16", "--channels", "8", "--channel-mult", "1,2", "--attention", "", "--quiet"]) == 0
    folder = tmp_path / "onnx"
    assert run(["export", "--run", r, "--out", folder, "--steps", "6"], capsys)[0] == 0
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["decoder"] == "decoder.onnx" and plan["decoder_vs_torch"] <= 1e-4
    noise = np.random.default_rng(3).standard_normal((5, *plan["shape"]), dtype=np.float32)  # latents
    labels = np.arange(5)
    np.save(tmp_path / "labels.npy", labels)
    theirs = sample_without_torch(folder, tmp_path, noise, "--labels", tmp_path / "labels.npy", "--guidance", 2)
    ours = sample_run(r, 5, "dpmpp-2m", 6, noise=noise, cond=labels.tolist(), guidance=2.0, precision="fp32")
    assert theirs.shape == ours.shape == (5, 1, 8, 8)  # pixels, decoded
    assert np.abs(theirs - ours).max() <= 1e-3 and ours.std() > 0.01


def test_exported_latent_text_run_samples_its_exported_prompts_without_torch(digits_vae, tmp_path, capsys):
    digits_text_run = tmp_path / "latent-text"
    assert main(["train", "--data", "digits", "--text", "--latent", str(digits_vae), "--out", str(digits_text_run),
                 "--steps", "8", "--batch-size", "16", "--channels", "8", "--channel-mult", "1,2", "--attention", "",
                 "--quiet"]) == 0
    folder = tmp_path / "onnx"
    code, _, err = run(["export", "--run", digits_text_run, "--out", folder, "--steps", "6", "--prompts",
                        "the digit 4", "a handwritten seven"], capsys)
    assert code == 0, err
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["prompts"] == ["the digit 4", "a handwritten seven"] and plan["onnx_vs_torch"] <= 1e-4
    assert plan["decoder"] == "decoder.onnx"
    noise = np.random.default_rng(4).standard_normal((4, *plan["shape"]), dtype=np.float32)
    for prompt, w in (("a handwritten seven", 5.0), ("the digit 4", 1.0)):
        theirs = sample_without_torch(folder, tmp_path, noise, "--prompt", prompt, "--guidance", w)
        ours = sample_run(digits_text_run, 4, "dpmpp-2m", 6, noise=noise, prompt=prompt, guidance=w, precision="fp32")
        assert np.abs(theirs - ours).max() <= 1e-3 and ours.std() > 0.01
    unknown = subprocess.run([sys.executable, "-c", NO_TORCH, str(folder / "sample.py"), "--prompt", "a cat", "--out",
                              str(tmp_path / "x.npy")], check=False, capture_output=True, text=True)
    assert unknown.returncode != 0 and "'a cat' was not exported" in unknown.stderr
    code, _, err = run(["export", "--run", digits_text_run, "--out", tmp_path / "o2"], capsys)
    assert_user_error(code, err, "give --prompts")
    assert not (tmp_path / "o2").exists()


def test_exported_point_run_reproduces_diffkit(tiny_run, tmp_path, capsys):
    folder = tmp_path / "onnx"
    assert run(["export", "--run", tiny_run, "--out", folder, "--sampler", "ddim", "--steps", 10], capsys)[0] == 0
    noise = np.random.default_rng(3).standard_normal((200, 2), dtype=np.float32)
    theirs = sample_without_torch(folder, tmp_path, noise)
    ours = sample_run(tiny_run, 200, "ddim", 10, noise=noise)
    assert np.abs(theirs - ours).max() <= 1e-3 * max(1.0, np.abs(ours).max())


@pytest.mark.parametrize("flags, fragment", [
    (["--sampler", "euler"], "the exported sampler must be one of ddim, dpmpp-2m, dpmpp-3m"),
    (["--steps", "0"], "--steps must be a positive integer"),
])
def test_bad_exports_are_one_sentence_and_write_nothing(tiny_run, tmp_path, capsys, flags, fragment):
    code, _, err = run(["export", "--run", tiny_run, "--out", tmp_path / "x", *flags], capsys)
    assert_user_error(code, err, fragment)
    assert not list(tmp_path.iterdir())


def test_export_refuses_a_folder_that_is_not_a_run_and_an_existing_out(tiny_run, tmp_path, capsys):
    code, _, err = run(["export", "--run", tmp_path, "--out", tmp_path / "x"], capsys)
    assert_user_error(code, err, "holds no config.json")
    (tmp_path / "x").mkdir()
    code, _, err = run(["export", "--run", tiny_run, "--out", tmp_path / "x"], capsys)
    assert_user_error(code, err, "already exists")
