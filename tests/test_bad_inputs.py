"""The bad-input catalogue: every entry is something a user can get wrong, with the one sentence diffkit answers
and the exit code. CLI entries run `diffkit` in-process; API entries call the library. (The fuzz of CLI arguments
and data files is tests/test_fuzz_inputs.py.)
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from diffkit.cli import main
from diffkit.errors import DiffkitError

TINY_UNET = ["--channels", "8", "--channel-mult", "1,2", "--attention", ""]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Runs and bad data files the catalogue refers to as {name}."""
    root = tmp_path_factory.mktemp("bad")
    w = {"tmp": root}
    w["run"] = root / "run"
    assert main(["train", "--data", "circle", "--out", str(w["run"]), "--steps", "20", "--quiet"]) == 0
    w["crun"] = root / "crun"
    assert main(["train", "--data", "shapes3", "--cond", "--out", str(w["crun"]), "--steps", "20", "--quiet"]) == 0
    w["nullrun"] = root / "nullrun"
    assert main(["train", "--data", "shapes3", "--cond", "--p-uncond", "0", "--out", str(w["nullrun"]), "--steps", "20",
                 "--quiet"]) == 0
    w["irun"] = root / "irun"
    assert main(["train", "--data", "digits", "--cond", "--out", str(w["irun"]), "--steps", "4", *TINY_UNET, "--quiet"]) == 0
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 2)).astype(np.float32)

    def f(name, write):
        path = root / name
        write(path)
        w[name.split(".")[0]] = path

    f("samples.npy", lambda p: np.save(p, pts))
    f("samples3d.npy", lambda p: np.save(p, rng.normal(size=(50, 3))))
    f("nan.npy", lambda p: np.save(p, np.array([[0.0, np.nan]] * 20)))
    f("objects.npy", lambda p: np.save(p, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True))
    f("multi.npz", lambda p: np.savez(p, a=pts, b=pts))
    f("empty.npz", lambda p: np.savez(p))
    f("ylen.npz", lambda p: np.savez(p, x=pts, y=np.zeros(10, int)))
    f("yskip.npz", lambda p: np.savez(p, x=pts, y=np.where(np.arange(300) % 2, 2, 0)))
    f("yfloat.npz", lambda p: np.savez(p, x=pts, y=np.full(300, 0.5)))
    f("strlabels.csv", lambda p: p.write_text("x,y,label\n" + "".join(f"{a},{b},cat\n" for a, b in pts[:20])))
    f("ragged.csv", lambda p: p.write_text("1,2\n3,4,5,6\n"))
    f("words.csv", lambda p: p.write_text("1,2\nthree,4\n"))
    f("emptyfile.csv", lambda p: p.write_text(""))
    f("notes.txt", lambda p: p.write_text("hello"))
    f("binary.npy", lambda p: p.write_bytes(b"\x00\x01garbage" * 10))
    # images
    def img_folder(name, sizes, corrupt=False, extra=None):
        d = root / name
        d.mkdir()
        for i, s in enumerate(sizes):
            Image.fromarray(rng.integers(0, 255, (s, s), dtype=np.uint8)).save(d / f"{i}.png")
        if corrupt:
            (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        for fname, text in (extra or {}).items():
            (d / fname).write_text(text)
        w[name] = d

    img_folder("imgmixed", [8, 8, 9, 8])
    img_folder("imgcorrupt", [8, 8, 8], corrupt=True)
    img_folder("imgempty", [])
    img_folder("imgnoimages", [], extra={"readme.txt": "x", "data.csv": "1,2"})
    img_folder("img1x1", [1, 1, 1, 1])
    f("imgylen.npz", lambda p: np.savez(p, x=rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), y=np.zeros(5, int)))
    f("imgsamples.npy", lambda p: np.save(p, rng.random((16, 1, 8, 8), dtype=np.float32)))
    f("imgsampleswrong.npy", lambda p: np.save(p, rng.random((16, 3, 5, 5), dtype=np.float32)))
    f("existing.npy", lambda p: np.save(p, pts))
    # Gaussian mixture specs
    def mixture(weights, means, covariances, **extra):
        return lambda p: p.write_text(json.dumps({"weights": weights, "means": means, "covariances": covariances,
                                                  **extra}))

    eye = [[1.0, 0.0], [0.0, 1.0]]
    f("mixok.json", mixture([0.5, 0.5], [[0, 0], [2, 0]], [eye, eye], labels=[0, 1]))
    f("mixnonpd.json", mixture([0.5, 0.5], [[0, 0], [2, 0]], [eye, [[1.0, 2.0], [2.0, 1.0]]]))
    f("mixweights.json", mixture([0.5, 0.6], [[0, 0], [2, 0]], [eye, eye]))
    f("mixdims.json", mixture([0.5, 0.5], [[0, 0], [2, 0, 1]], [eye, eye]))
    f("mixcovdims.json", mixture([1.0], [[0, 0]], [[[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]]))
    f("mixnan.json", lambda p: p.write_text('{"weights": [1.0], "means": [[NaN, 0]], "covariances": [[[1, 0], [0, 1]]]}'))
    f("mixtext.json", lambda p: p.write_text('{"weights": [1.0], "means": [["a", 0]], "covariances": [[[1, 0], [0, 1]]]}'))
    f("mixbroken.json", lambda p: p.write_text('{"weights": [1.0], '))
    f("mixlist.json", lambda p: p.write_text('[1, 2, 3]'))
    f("mixlabels.json", mixture([0.5, 0.5], [[0, 0], [2, 0]], [eye, eye], labels=[0, 2]))
    f("afile", lambda p: p.write_text("mine"))
    # damaged runs
    for name in ("nomodel", "badconfig", "flipped", "foreignconfig", "flippedstate"):
        shutil.copytree(w["run"], root / name)
        w[name] = root / name
    (w["nomodel"] / "model.safetensors").unlink()
    (w["badconfig"] / "config.json").write_text('{"format": "diffkit-run", ')
    data = bytearray((w["flipped"] / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 1
    (w["flipped"] / "model.safetensors").write_bytes(bytes(data))
    state = w["flippedstate"] / "train_state" / "step-00000020" / "state.safetensors"
    data = bytearray(state.read_bytes())
    data[-5] ^= 1
    state.write_bytes(bytes(data))
    (w["foreignconfig"] / "manifest.json").unlink()
    (w["foreignconfig"] / "config.json").write_text('{"hello": 1}')
    return w


R, S, E = "train", "sample", "eval"
# (argv with {placeholders}, message fragment, exit code)
CLI = [
    # train: flags
    ([R, "--data", "nosuch", "--out", "{tmp}/r1"], "unknown dataset 'nosuch'", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--steps", "0"], "--steps must be a positive integer", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--steps", "ten"], "--steps must be a positive integer", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--batch-size", "-5"], "--batch-size must be a positive", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--lr", "nan"], "--lr must be a finite number", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--lr", "0"], "learning rate must be positive", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--schedule", "wavy"], "unknown schedule", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--prediction", "score"], "unknown prediction type", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--timesteps", "0"], "--timesteps must be a positive", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--zero-terminal-snr", "--prediction", "epsilon"],
     "zero-terminal-SNR", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--p-uncond", "0.2"], "give --cond or --text", 2),
    ([R, "--data", "shapes3", "--cond", "--out", "{tmp}/r1", "--p-uncond", "1"], "p_uncond", 2),
    ([R, "--data", "circle", "--cond", "--out", "{tmp}/r1"], "has no labels", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "score"], "unknown objective 'score'", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "flow", "--time-dist", "beta"],
     "unknown time distribution 'beta'", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "flow", "--time-dist", "lognormal"],
     "does not apply to the flow objective", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "flow", "--shift", "0"], "--shift is a finite", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "flow", "--shift", "inf"], "--shift must be a finite", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "flow", "--time-scale", "0"], "--time-scale is the std", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "edm", "--time-loc", "50"], "--time-loc is the mean", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "flow", "--time-dist", "uniform", "--time-loc", "1"],
     "not a uniform one", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--shift", "3"], "the ddpm objective does not take them", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "flow", "--foreground-weight", "4"],
     "this run trains on points", 2),
    ([R, "--data", "digits", "--out", "{tmp}/r1", "--foreground-weight", "4"], "the ddpm objective does not take it", 2),
    ([R, "--data", "mnist5k", "--out", "{tmp}/r1", "--foreground-band", "0.3,0.8"], "give --foreground-weight", 2),
    ([R, "--data", "mnist5k", "--out", "{tmp}/r1", "--foreground-weight", "4", "--foreground-band", "0.8,0.3"],
     "--foreground-band takes two flow times", 2),
    ([R, "--data", "mnist5k", "--out", "{tmp}/r1", "--foreground-weight", "-1"], "--foreground-weight must be a", 2),
    ([R, "--data", "mnist5k", "--out", "{tmp}/r1", "--foreground-weight", "500"], "extra loss weight in [0, 100]", 2),
    ([R, "--data", "mnist5k", "--cond", "--out", "{tmp}/r1", "--prediction", "epsilon"],
     "does not apply to the flow objective, mnist5k's default", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--time-dist", "uniform"], "the ddpm objective does not take", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "edm", "--schedule", "cosine"],
     "--schedule shape a ddpm schedule; the edm objective does not take them", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "edm", "--shift", "2"],
     "--shift shifts a flow's times; the edm objective has none", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--objective", "flow", "--prediction", "v"],
     "--prediction v does not apply to the flow objective", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--prediction", "flow"],
     "--prediction flow does not apply to the ddpm objective", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--flip"], "--flip shape the image U-Net", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--channels", "16"], "--channels shape the image U-Net", 2),
    ([R, "--data", "digits", "--out", "{tmp}/r1", "--channel-mult", "1,x"], "comma-separated integers", 2),
    ([R, "--data", "digits", "--out", "{tmp}/r1", "--channels", "7"], "must be even", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--checkpoint-every", "0"], "--checkpoint-every must be", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--batch-size", "1000000000000"], "use a smaller --batch-size", 2),
    ([R, "--data", "digits", "--out", "{tmp}/r1", "--batch-size", "100000000"], "GiB for its activations", 2),
    ([R, "--data", "circle", "--out", "{run}"], "already holds a run", 2),
    ([R, "--data", "circle", "--out", "{afile}"], "is a file, not a folder", 2),
    ([R, "--out", "{run}", "--resume", "--data", "moons"], "--data moons (the run has data.spec", 2),
    ([R, "--out", "{run}", "--resume", "--overwrite"], "contradict", 2),
    ([R, "--out", "{run}", "--resume"], "already finished its 20 steps", 2),
    ([R, "--out", "{run}", "--resume", "--steps", "50"], "continues this run to its 20 steps", 2),
    ([R, "--out", "{tmp}/nothing", "--resume"], "does not exist", 2),
    ([R, "--out", "{flippedstate}", "--resume"], "step-00000020/state.safetensors does not match its checksum", 2),
    # train: data files (points)
    ([R, "--data", "{nan}", "--out", "{tmp}/r1"], "NaN or Inf", 2),
    ([R, "--data", "{samples3d}", "--out", "{tmp}/r1"], "expected [N, 2]", 2),
    ([R, "--data", "{objects}", "--out", "{tmp}/r1"], "Python objects", 2),
    ([R, "--data", "{multi}", "--out", "{tmp}/r1"], "none is named 'x'", 2),
    ([R, "--data", "{empty}", "--out", "{tmp}/r1"], "holds no arrays", 2),
    ([R, "--data", "{ylen}", "--cond", "--out", "{tmp}/r1"], "one label per point", 2),
    ([R, "--data", "{yskip}", "--cond", "--out", "{tmp}/r1"], "skip class 1", 2),
    ([R, "--data", "{yfloat}", "--cond", "--out", "{tmp}/r1"], "whole numbers", 2),
    ([R, "--data", "{strlabels}", "--cond", "--out", "{tmp}/r1"], "must be class ids 0..C-1", 2),
    ([R, "--data", "{ragged}", "--out", "{tmp}/r1"], "row 2 has 4 columns", 2),
    ([R, "--data", "{words}", "--out", "{tmp}/r1"], "must be numbers", 2),
    ([R, "--data", "{emptyfile}", "--out", "{tmp}/r1"], "is empty", 2),
    ([R, "--data", "{notes}", "--out", "{tmp}/r1"], "unknown dataset", 2),
    ([R, "--data", "{binary}", "--out", "{tmp}/r1"], "cannot read", 2),
    ([R, "--data", "{tmp}/missing.npy", "--out", "{tmp}/r1"], "does not exist", 2),
    # train: images
    ([R, "--data", "{imgmixed}", "--out", "{tmp}/r1"], "images differ in size", 2),
    ([R, "--data", "{imgcorrupt}", "--out", "{tmp}/r1"], "bad.png", 2),
    ([R, "--data", "{imgempty}", "--out", "{tmp}/r1"], "is empty; expected PNG/JPEG images", 2),
    ([R, "--data", "{imgnoimages}", "--out", "{tmp}/r1"], "no images", 2),
    ([R, "--data", "{img1x1}", "--out", "{tmp}/r1"], "at least 4x4 pixels", 2),
    ([R, "--data", "{imgylen}", "--out", "{tmp}/r1"], "y", 2),
    # sample
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--sampler", "euler-x"], "unknown sampler 'euler-x'", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--steps", "0"], "steps", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--steps", "5000"], "steps", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--spacing", "zigzag"], "unknown", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--spacing", "trailing:0.3"], "only karras and logsnr", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--spacing", "logsnr:-1"], "SIGMA_MIN > 0", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--eta", "-1"], "--eta must be a finite number >= 0", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--sampler", "ddim", "--eta", "5"], "eta is in [0, 1]", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--sampler", "langevin", "--snr", "100"], "snr in (0, 1]", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--sampler", "ddpm", "--variance", "wide"], "DDPM variance", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--sampler", "ddpm", "--eta", "0.5"], "does not take option", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--class", "1"], "--cond", 2),
    ([S, "--run", "{crun}", "--out", "{tmp}/s.npy", "--class", "99"], "class", 2),
    ([S, "--run", "{crun}", "--out", "{tmp}/s.npy", "--guidance", "3"], "needs a class", 2),
    ([S, "--run", "{crun}", "--out", "{tmp}/s.npy", "--class", "0", "--guidance", "-1"], "--guidance must be", 2),
    ([S, "--run", "{nullrun}", "--out", "{tmp}/s.npy", "--class", "0", "--guidance", "3"], "p_uncond 0", 2),
    ([S, "--run", "{nullrun}", "--out", "{tmp}/s.npy"], "p_uncond 0", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--n", "0"], "--n must be a positive integer", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--n", "1000000000000"], "GiB", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.txt"], "must end in .npy", 2),
    ([S, "--run", "{run}", "--out", "{existing}"], "already exists", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/no/dir/s.npy"], "does not exist", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--grid", "{tmp}/g.png"], "--grid and --gif draw image runs", 2),
    ([S, "--run", "{irun}", "--out", "{tmp}/s.npy", "--plot", "{tmp}/p.png"], "--plot draws point runs", 2),
    ([S, "--run", "{irun}", "--out", "{tmp}/s.npy", "--class", "10"], "class", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--seed", "-3"], "--seed takes an integer", 2),
    ([S, "--run", "{crun}", "--out", "{tmp}/s.npy", "--class", "0", "--guidance-interval", "5,1"], "LO,HI", 2),
    ([S, "--run", "{nomodel}", "--out", "{tmp}/s.npy"], "model.safetensors is missing", 2),
    ([S, "--run", "{badconfig}", "--out", "{tmp}/s.npy"], "config.json", 2),
    ([S, "--run", "{foreignconfig}", "--out", "{tmp}/s.npy"], "not a diffkit run config", 2),
    ([S, "--run", "{flipped}", "--out", "{tmp}/s.npy"], "model.safetensors does not match its checksum", 2),
    ([S, "--run", "{tmp}/nothing", "--out", "{tmp}/s.npy"], "does not exist", 2),
    ([S, "--run", "{afile}", "--out", "{tmp}/s.npy"], "is a file, not a diffkit run directory", 2),
    # eval
    ([E, "--samples", "{tmp}/missing.npy", "--data", "circle"], "does not exist", 2),
    ([E, "--samples", "{samples3d}", "--data", "circle"], "expected [N, 2]", 2),
    ([E, "--samples", "{samples}", "--data", "nosuch"], "unknown dataset", 2),
    ([E, "--samples", "{samples}", "--data", "circle", "--n-ref", "0"], "--n-ref must be a positive", 2),
    ([E, "--samples", "{samples}", "--data", "circle", "--class", "1"], "--class applies to image samples", 2),
    ([E, "--samples", "{imgsamples}", "--data", "digits", "--class", "12"], "class", 2),
    ([E, "--samples", "{imgsampleswrong}", "--data", "digits"], "must have shape [N, 1, 8, 8]", 2),
    # the oracle and Gaussian mixture specs
    ([S, "--oracle", "{mixnonpd}", "--out", "{tmp}/s.npy"], "covariance 1 is not positive definite", 2),
    ([S, "--oracle", "{mixweights}", "--out", "{tmp}/s.npy"], "weights must be >= 0 and sum to 1", 2),
    ([S, "--oracle", "{mixdims}", "--out", "{tmp}/s.npy"], "means must be a rectangular array of numbers, [K][D]", 2),
    ([S, "--oracle", "{mixcovdims}", "--out", "{tmp}/s.npy"], "covariances must be 1 matrices of 2x2", 2),
    ([S, "--oracle", "{mixnan}", "--out", "{tmp}/s.npy"], "must be finite numbers", 2),
    ([S, "--oracle", "{mixtext}", "--out", "{tmp}/s.npy"], "means must be a rectangular array", 2),
    ([S, "--oracle", "{mixbroken}", "--out", "{tmp}/s.npy"], "is not readable JSON", 2),
    ([S, "--oracle", "{mixlist}", "--out", "{tmp}/s.npy"], "must be a JSON object", 2),
    ([S, "--oracle", "{mixlabels}", "--out", "{tmp}/s.npy"], "labels must be 2 class ids", 2),
    ([S, "--oracle", "{tmp}/nosuch.json", "--out", "{tmp}/s.npy"], "does not exist", 2),
    ([S, "--oracle", "gaussians9", "--out", "{tmp}/s.npy"], "unknown mixture 'gaussians9'", 2),
    ([S, "--oracle", "gaussians8", "--run", "{run}", "--out", "{tmp}/s.npy"], "not allowed with argument --oracle", 2),
    ([S, "--oracle", "gaussians8", "--out", "{tmp}/s.npy", "--class", "0"], "has no labels", 2),
    ([S, "--oracle", "{mixok}", "--out", "{tmp}/s.npy", "--class", "5"], "class 5 is out of range", 2),
    ([S, "--oracle", "{mixok}", "--out", "{tmp}/s.npy", "--guidance", "3"], "needs a class to guide towards", 2),
    ([S, "--oracle", "gaussians8", "--out", "{tmp}/s.npy", "--schedule", "wavy"], "unknown schedule", 2),
    ([S, "--oracle", "gaussians8", "--out", "{tmp}/s.npy", "--grid", "{tmp}/g.png"], "does not apply to --oracle", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--schedule", "cosine"], "applies to --oracle", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--shift", "3"], "a run samples on the path it was trained on", 2),
    ([S, "--oracle", "gaussians8", "--out", "{tmp}/s.npy", "--shift", "3"], "the ddpm path has none", 2),
    ([S, "--oracle", "gaussians8", "--out", "{tmp}/s.npy", "--objective", "edm", "--shift", "3"],
     "the edm path has none", 2),
    ([R, "--data", "{mixnonpd}", "--out", "{tmp}/r1"], "not positive definite", 2),
    ([R, "--data", "{mixok}", "--cond", "--out", "{tmp}/r1", "--steps", "0"], "--steps must be a positive", 2),
    # likelihoods
    ([E, "--nll"], "give --run RUN", 2),
    ([E, "--nll", "--run", "{run}", "--samples", "{samples}"], "takes no --samples", 2),
    ([E, "--nll", "--run", "{run}", "--data", "digits"], "is image data, but the run models 2-D points", 2),
    ([E, "--nll", "--run", "{irun}", "--data", "circle"], "is not image data", 2),
    ([E, "--nll", "--run", "{run}", "--n", "1"], "needs 2..100000 points", 2),
    ([E, "--nll", "--run", "{run}", "--tol", "0"], "--tol must be in (0, 0.1]", 2),
    ([E, "--nll", "--run", "{run}", "--elbo-strata", "5000"], "strata must be an integer in 1..999", 2),
    ([E, "--nll", "--run", "{nomodel}"], "model.safetensors", 2),
    ([E, "--nll", "--run", "{nullrun}"], "its unconditional model (the null class) never trained", 2),
    ([E, "--samples", "{samples}", "--data", "circle", "--run", "{run}"], "--run belongs to --nll", 2),
    ([E, "--data", "circle"], "eval needs --samples FILE and --data NAME", 2),
    ([E, "--samples", "{samples}", "--data", "circle", "--prompt", "a 7"], "--prompt belongs to --straightness", 2),
    ([E, "--straightness", "--run", "{crun}", "--prompt", "a 7"], "cannot follow a prompt", 2),
    ([E, "--straightness", "--run", "{nullrun}"], "p_uncond 0", 2),
    (["reflow", "--teacher", "{nullrun}", "--out", "{tmp}/rf", "--guidance", "2"], "drop --guidance (w = 1)", 2),
    # distillation (tests/test_distill.py covers a VAE teacher, a replaced teacher and a student's steps)
    (["distill", "--teacher", "{run}", "--out", "{tmp}/d", "--method", "dmd"], "unknown distillation method 'dmd'", 2),
    (["distill", "--teacher", "{run}", "--out", "{tmp}/d", "--steps", "6"], "power of two", 2),
    (["distill", "--teacher", "{run}", "--out", "{tmp}/d", "--guidance", "3"], "this one is unconditional", 2),
    (["distill", "--teacher", "{nullrun}", "--out", "{tmp}/d", "--guidance", "3"], "drop --guidance (w = 1)", 2),
    (["distill", "--teacher", "{notes}", "--out", "{tmp}/d"], "not a diffkit run directory", 2),
    (["distill", "--out", "{tmp}/d"], "distill needs --teacher RUN", 2),
    (["distill", "--teacher", "{run}", "--out", "{tmp}/d", "--steps", "0"], "--steps", 2),
    # devices, precision and processes
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--device", "tpu"], "unknown device 'tpu'; use auto, cpu", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--device", "cuda"] if not torch.cuda.is_available() else
     [R, "--data", "circle", "--out", "{tmp}/r1", "--device", "cuda:99"], "cuda", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--device", "cpu:1"], "unknown device 'cpu:1'", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--precision", "fp8"], "invalid choice: 'fp8'", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--nproc", "0"], "--nproc must be a positive integer", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--nproc", "3"], "does not split evenly over 3 processes", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--batch-per-device", "1000"], "--batch-per-device 1000 does not divide", 2),
    ([R, "--data", "circle", "--out", "{tmp}/r1", "--nproc", "2", "--batch-per-device", "300"], "each of the 2 processes trains 512", 2),
    ([R, "--out", "{run}", "--resume", "--nproc", "3"], "does not split evenly over 3 processes", 2),
    ([S, "--run", "{run}", "--out", "{tmp}/s.npy", "--device", "gpu"], "unknown device 'gpu'", 2),
    ([E, "--samples", "{samples}", "--data", "circle", "--device", "quantum"], "unknown device", 2),
    # the rest
    (["demo", "--data", "moons"], "the demo runs on spiral or an image set", 2),
    (["lab", "--port", "70000"], "--port takes an integer in 1..65535", 2),
    (["lab", "--port", "http"], "--port takes an integer", 2),
    (["lab", "--runs", "{afile}"], "is a file; give a folder of run directories", 2),
    (["frobnicate"], "invalid choice", 2),
    ([S], "required", 2),
]


def fill(argv, w):
    return [a.format(**w) for a in argv]


@pytest.mark.parametrize("argv, fragment, code", CLI, ids=[" ".join(c[0])[:60] for c in CLI])
def test_cli_bad_input(world, capsys, argv, fragment, code):
    before = {p: p.stat().st_mtime_ns for p in world["tmp"].rglob("*") if p.is_file() and p.name != ".lock"}
    assert main(fill(argv, world)) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("notice: ", "precision: ", "threads: "))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert fragment in err, (fragment, err)
    after = {p: p.stat().st_mtime_ns for p in world["tmp"].rglob("*") if p.is_file() and p.name != ".lock"}
    assert {p: t for p, t in after.items() if p in before} == before  # nothing that existed was touched
    assert not (world["tmp"] / "r1").exists() or not (world["tmp"] / "r1" / "model.safetensors").exists()
    assert not (world["tmp"] / "s.npy").exists()


# --- the Python API and config files ---------------------------------------------------------------

def _api_cases():
    import torch

    from diffkit import Denoiser, NoiseSchedule
    from diffkit.config import RunConfig
    from diffkit.data.images import load_images
    from diffkit.data.points import load_file
    from diffkit.runs import eval_samples, load_run, sample_run

    base = RunConfig().to_dict()

    def cfg(**changes):
        d = json.loads(json.dumps(base))
        for path, v in changes.items():
            *head, last = path.split("__")
            node = d
            for h in head:
                node = node[h]
            node[last] = v
        return RunConfig.from_dict(d).validate()

    net = torch.nn.Linear(2, 2)
    return [
        (lambda w: cfg(train__steps=-1), "steps must be a positive integer"),
        (lambda w: cfg(train__precision="fp8"), "unknown training precision"),
        (lambda w: cfg(train__min_snr_gamma=-1.0), "min_snr_gamma must be >= 0"),
        (lambda w: cfg(train__threads=-2), "threads must be >= 0"),
        (lambda w: cfg(prediction="noise"), "unknown prediction type"),
        (lambda w: cfg(schedule__name="nope"), "unknown schedule"),
        (lambda w: cfg(sampling__guidance_interval=[2, 1]), "guidance_interval"),
        (lambda w: cfg(train__keep_checkpoints=0), "keep checkpoints must be a positive integer"),
        (lambda w: RunConfig.from_dict({"format": "diffkit-run", "version": 99}), "incomplete or malformed"),
        (lambda w: NoiseSchedule.from_name("nope"), "unknown schedule"),
        (lambda w: Denoiser(net, NoiseSchedule.from_name("linear"), "nope"), "unknown prediction type"),
        (lambda w: load_file(w["multi"]), "none is named 'x'"),
        (lambda w: load_file(w["tmp"] / "x.parquet"), "neither a dataset name"),
        (lambda w: load_images(str(w["imgmixed"])), "images differ in size"),
        (lambda w: load_images("nosuch-images"), "unknown"),
        (lambda w: load_run(w["nomodel"]), "missing"),
        (lambda w: sample_run(w["run"], 10, "nope"), "unknown sampler"),
        (lambda w: sample_run(w["crun"], 10, cond="nosuchclass"), "class"),
        (lambda w: eval_samples(np.zeros((10, 2)), str(w["tmp"] / "tiny.npy")), "does not exist"),
    ]


API = list(range(19))


@pytest.mark.parametrize("i", API)
def test_api_bad_input(world, i):
    fn, fragment = _api_cases()[i]
    with pytest.raises(DiffkitError) as e:
        fn(world)
    assert fragment in str(e.value), (fragment, str(e.value))
    assert "\n" not in str(e.value)


def test_the_catalogue_is_long_enough():
    assert len(CLI) + len(API) >= 60 and len(_api_cases()) == len(API)
