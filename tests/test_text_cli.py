"""Text to image through the CLI and the library: train --text, sample --prompt / --prompts, eval --prompts, and
every bad input as one sentence with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffkit.cli import main
from diffkit.runs import default_config, make_trainer, sample_run
from diffkit.store.rundir import read_config


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_text_run_config_and_cached_captions(digits_text_run):
    cfg = read_config(digits_text_run)
    assert cfg.data.text == "minilm" and cfg.network.context_dim == 384 and cfg.network.num_classes == 0
    source = make_trainer(cfg, digits_text_run.parent / "unused", progress=False).source
    g = torch.Generator().manual_seed(0)
    x0, cond = source.draw(64, g)
    assert x0.shape == (64, 1, 8, 8) and cond["tokens"].shape[0] == 64 and cond["tokens"].shape[2] == 384
    assert cond["mask"][:, 0].all()  # every caption starts with [CLS]
    assert len(torch.unique(cond["tokens"][:, 1:3].reshape(64, -1), dim=0)) > 10  # many different captions


def test_sample_prompts_rows_follow_the_prompts(digits_text_run, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# digits\nthe digit 3\n\na handwritten seven\n")
    out = tmp_path / "s.npy"
    code, _stdout, err = run_cli(capsys, "sample", "--run", digits_text_run, "--prompt", "the digit 0", "--prompts",
                                 prompts, "--n", 4, "--guidance", 3, "--sampler", "dpmpp-2m", "--steps", 8,
                                 "--seed", 5, "--out", out, "--grid", tmp_path / "g.png")
    assert code == 0, err
    x = np.load(out)
    assert x.shape == (12, 1, 8, 8) and (tmp_path / "g.png").exists()
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["prompts"] == ["the digit 0", "the digit 3", "a handwritten seven"] and side["guidance"] == 3
    # the same seed and prompts again: bitwise the same; the rows of prompt 1 equal a one-prompt call's
    again = sample_run(digits_text_run, 4, "dpmpp-2m", 8, seed=5, guidance=3.0,
                       prompt=["the digit 0", "the digit 3", "a handwritten seven"])
    assert np.array_equal(again, x)
    other = sample_run(digits_text_run, 4, "dpmpp-2m", 8, seed=5, guidance=3.0, prompt="the digit 7")
    assert not np.array_equal(other, x[:4])  # the prompt reaches the samples
    uncond = sample_run(digits_text_run, 4, "ddim", 8, seed=5)
    assert uncond.shape == (4, 1, 8, 8) and np.isfinite(uncond).all()


def test_eval_prompts_scores_shapes_per_attribute(shapes_text_run, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a large red circle at the top left\na small blue square\n")
    out = tmp_path / "s.npy"
    assert main(["sample", "--run", str(shapes_text_run), "--prompts", str(prompts), "--n", "3", "--steps", "4",
                 "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    code, stdout, err = run_cli(capsys, "eval", "--samples", out, "--prompts", prompts, "--data", "shapes", "--json")
    assert code == 0, err
    m = json.loads(stdout)
    x = np.load(out)
    from diffkit.metrics.shapes import read_shapes

    found = read_shapes(x)
    want_shape = np.array([0, 0, 0, 1, 1, 1])
    assert m["overall"]["shape"] == pytest.approx((found["shape"] == want_shape).mean())
    assert set(m["prompts"][1]) == {"prompt", "n", "shape", "colour", "size", "all"}  # no position asked
    code, stdout, _ = run_cli(capsys, "eval", "--samples", out, "--prompts", prompts, "--data", "shapes")
    assert code == 0 and "all prompts" in stdout and "position" in stdout


def test_eval_prompts_digits_uses_the_judge(digits_text_run, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("the digit 1\nthe digit 2\n")
    out = tmp_path / "s.npy"
    assert main(["sample", "--run", str(digits_text_run), "--prompts", str(prompts), "--n", "6", "--steps", "4",
                 "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    code, stdout, err = run_cli(capsys, "eval", "--samples", out, "--prompts", prompts, "--data", "digits", "--json")
    assert code == 0, err
    m = json.loads(stdout)
    per = [r["digit"] for r in m["prompts"]]
    assert m["overall"]["digit"] == pytest.approx(np.mean(per)) and 0 <= m["overall"]["digit"] <= 1


def test_lab_prompt_endpoint(shapes_text_run, digits_text_run, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from diffkit.lab.app import create_app

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(shapes_text_run, runs / "shapestext")
    client = TestClient(create_app(runs), base_url="http://localhost")
    listed = client.get("/api/runs").json()["runs"]
    assert listed[0]["text"] is True
    r = client.post("/api/prompt", json={"run": "shapestext", "prompt": "a large red circle", "w": 3, "n": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["samples"]) == 4 and len(body["samples"][0]) == 3 * 32 * 32 and body["tokens"] == 6
    assert set(body["adherence"]) == {"shape", "colour", "size", "all"}
    again = client.post("/api/prompt", json={"run": "shapestext", "prompt": "a large red circle", "w": 3, "n": 4})
    assert again.json()["samples"] == body["samples"]  # the same seed
    bad = client.post("/api/prompt", json={"run": "shapestext", "prompt": "  ", "w": 3})
    assert bad.status_code == 400 and "prompt is empty" in bad.json()["error"]


BAD = [
    (["sample", "--run", "{digits}", "--prompt", "   ", "--out", "{tmp}/a.npy"], "the prompt is empty"),
    (["sample", "--run", "{digits}", "--class", "3", "--out", "{tmp}/a.npy"], "this is a text run"),
    (["sample", "--run", "{digits}", "--guidance", "3", "--out", "{tmp}/a.npy"], "needs a prompt to guide towards"),
    (["sample", "--run", "{circle}", "--prompt", "a red circle", "--out", "{tmp}/a.npy"],
     "this run is unconditional (trained without --text), so it cannot follow a prompt"),
    (["sample", "--run", "{digits}", "--prompts", "{tmp}/missing.txt", "--out", "{tmp}/a.npy"], "does not exist"),
    (["train", "--data", "digits", "--text", "--cond", "--out", "{tmp}/r"], "two kinds of conditioning"),
    (["train", "--data", "spiral", "--text", "--out", "{tmp}/r"], "holds points"),
    (["train", "--data", "digits", "--text", "nope", "--out", "{tmp}/r"], "is neither 'minilm'"),
    (["train", "--data", "digits", "--text", "--flip", "--out", "{tmp}/r", "--steps", "2"], "drop it for text runs"),
    (["train", "--data", "{tmp}/nocaps", "--text", "--out", "{tmp}/r", "--steps", "2"], "has no captions"),
    (["train", "--data", "{tmp}/halfcaps", "--text", "--out", "{tmp}/r", "--steps", "2"],
     "1 of the 12 images in"),
    (["train", "--data", "{tmp}/badcsv", "--text", "--out", "{tmp}/r", "--steps", "2"], "which is not an image in"),
    (["eval", "--samples", "{tmp}/s.npy", "--prompts", "{tmp}/two.txt", "--data", "shapes"], "do not split evenly"),
    (["eval", "--samples", "{tmp}/s.npy", "--prompts", "{tmp}/vague.txt", "--data", "shapes"], "names no shape"),
]


def _folder(path, n=12, captions=None, csv_rows=None):
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(path / f"im{i:02d}.png")
        if captions is not None and i < captions:
            (path / f"im{i:02d}.txt").write_text(f"a picture number {i}")
    if csv_rows is not None:
        (path / "captions.csv").write_text("file,caption\n" + "".join(f"{f},{c}\n" for f, c in csv_rows))


@pytest.mark.parametrize("argv,needle", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_text_inputs_are_one_sentence(argv, needle, digits_text_run, tiny_run, tmp_path, capsys):
    _folder(tmp_path / "nocaps")
    _folder(tmp_path / "halfcaps", captions=11)
    _folder(tmp_path / "badcsv", csv_rows=[(f"im{i:02d}.png", "x") for i in range(12)] + [("ghost.png", "y")])
    np.save(tmp_path / "s.npy", np.zeros((3, 3, 32, 32), np.float32))
    (tmp_path / "two.txt").write_text("a red circle\na blue square\n")
    (tmp_path / "vague.txt").write_text("something nice\n")
    argv = [a.format(digits=digits_text_run, circle=tiny_run, tmp=tmp_path) for a in argv]
    code, _stdout, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "a.npy").exists()


def test_class_run_refuses_a_prompt(tmp_path, capsys):
    run = tmp_path / "cls"
    assert main(["train", "--data", "digits", "--cond", "--out", str(run), "--steps", "5", "--channels", "8",
                 "--quiet"]) == 0
    code, _, err = run_cli(capsys, "sample", "--run", run, "--prompt", "the digit 3", "--out", tmp_path / "a.npy")
    assert code == 2 and "this run is class-conditional (sample a class with --class)" in err


def test_folder_with_captions_trains_and_samples(tmp_path, capsys):
    _folder(tmp_path / "pics", csv_rows=[(f"im{i:02d}.png", f"a picture number {i}") for i in range(12)])
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "pics"), "--text", "--out", str(run), "--steps", "4",
                 "--channels", "8", "--batch-size", "8", "--quiet"]) == 0
    x = sample_run(run, 2, "ddim", 3, prompt="a picture number 3")
    assert x.shape == (2, 3, 8, 8)
    run2 = tmp_path / "run2"
    _folder(tmp_path / "txts", captions=12)
    assert main(["train", "--data", str(tmp_path / "txts"), "--text", "--out", str(run2), "--steps", "2",
                 "--channels", "8", "--batch-size", "8", "--quiet"]) == 0


def test_text_run_resumes_bitwise(tmp_path):
    """Stopped after its checkpoint at step 6 and resumed: the same weights as a run straight to 12 (the caption
    draws come from the trainer's checkpointed generator)."""
    from safetensors.torch import load_file

    from diffkit.runs import train_run

    class Stop(Exception):
        pass

    def cfg():
        c = default_config("digits", text="minilm")
        c.network.channels = 8
        c.train.steps, c.train.batch_size, c.train.checkpoint_every = 12, 16, 6
        return c

    def stop_at_7(rec):
        if rec.step == 7:
            raise Stop

    train_run(cfg(), tmp_path / "a", progress=False)
    with pytest.raises(Stop):
        train_run(cfg(), tmp_path / "b", progress=False, callback=stop_at_7)
    train_run(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_text_dit_and_a_latent_text_unet(digits_vae, tmp_path):
    """--net dit cross-attends in every block; --latent diffuses captions' images in a VAE's latent space."""
    for name, flags in (("dit", ["--net", "dit", "--dit-size", "tiny"]), ("lat", ["--latent", str(digits_vae),
                                                                                  "--channels", "8"])):
        out = tmp_path / name
        assert main(["train", "--data", "digits", "--text", *flags, "--out", str(out), "--steps", "3",
                     "--batch-size", "8", "--quiet"]) == 0
        cfg = read_config(out)
        assert cfg.network.context_dim == 384 and cfg.data.text == "minilm"
        x = sample_run(out, 2, "dpmpp-2m", 4, prompt=["the digit 1", "a handwritten two"], guidance=3.0)
        assert x.shape == (4, 1, 8, 8) and np.isfinite(x).all()
