import os

import pytest
import torch

from diffkit import NoiseSchedule, rescale_zero_terminal_snr
from diffkit.cli import main


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """The suite's tensors are small: one intra-op thread is faster and immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def _judge_cache(tmp_path_factory):
    """Judges trained by tests are cached in a temporary folder, never in the user's ~/.cache."""
    before = os.environ.get("DIFFKIT_CACHE")
    os.environ["DIFFKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("DIFFKIT_CACHE", None)
    else:
        os.environ["DIFFKIT_CACHE"] = before


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory trained for a few steps through the CLI (shared, read-only)."""
    out = tmp_path_factory.mktemp("runs") / "circle"
    assert main(["train", "--data", "circle", "--out", str(out), "--steps", "60", "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def digits_vae(tmp_path_factory):
    """A small VAE run on digits (factor 2: 8x8 -> 4x4x4 latents), trained through the CLI (shared, read-only)."""
    out = tmp_path_factory.mktemp("vae") / "digits-vae"
    assert main(["train-vae", "--data", "digits", "--out", str(out), "--factor", "2", "--steps", "120",
                 "--batch-size", "32", "--lr", "2e-3", "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def digits_text_run(tmp_path_factory):
    """A tiny text-to-image run on digits' captions, trained through the CLI (shared, read-only)."""
    out = tmp_path_factory.mktemp("text") / "digits-text"
    assert main(["train", "--data", "digits", "--text", "--out", str(out), "--steps", "60", "--batch-size", "32",
                 "--channels", "16", "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def shapes_text_run(tmp_path_factory):
    """A tiny text-to-image run on shapes' captions (pixels, 32x32), trained through the CLI (shared, read-only)."""
    out = tmp_path_factory.mktemp("text") / "shapes-text"
    assert main(["train", "--data", "shapes", "--text", "--pixel", "--out", str(out), "--steps", "20",
                 "--batch-size", "16", "--channels", "8", "--channel-mult", "1,2", "--attention", "", "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def edit_digits_dir(tmp_path_factory):
    """A tiny class-conditional digits run for editing, inversion and interpolation (shared, read-only)."""
    out = tmp_path_factory.mktemp("edit") / "digits"
    assert main(["train", "--data", "digits", "--cond", "--out", str(out), "--steps", "30", "--channels", "8",
                 "--channel-mult", "1,2", "--quiet"]) == 0  # 16 channels at 4x4, as the digits preset had then
    return out


@pytest.fixture
def fp32_sampling(monkeypatch):
    """Sampling in fp32 even on a CPU with native bf16, where `auto` picks bf16 for a U-Net: for tests that
    compare samples computed in other batches or by another library, which agree to 1e-4 in fp32 but only to
    about 1e-3 in bf16 (its kernels round differently per batch shape)."""
    monkeypatch.setattr("diffkit.nn.precision.bf16_native", lambda device: False)


# the 1000-step noise schedules the sampler tests share (test_fast_samplers.py, test_sampling_grids.py,
# test_sampler_edges.py; read-only); a test module's own fixture of the same name takes precedence
@pytest.fixture(scope="session")
def linear():
    return NoiseSchedule.from_name("linear", 1000)


@pytest.fixture(scope="session")
def cosine():
    return NoiseSchedule.from_name("cosine", 1000)


@pytest.fixture(scope="session")
def zero_snr():  # its own linear schedule: a module's narrower `linear` fixture must not feed a session fixture
    return rescale_zero_terminal_snr(NoiseSchedule.from_name("linear", 1000))
