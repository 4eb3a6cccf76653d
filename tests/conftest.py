import pytest

from diffkit.cli import main


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory trained for a few steps through the CLI (shared, read-only)."""
    out = tmp_path_factory.mktemp("runs") / "circle"
    assert main(["train", "--data", "circle", "--out", str(out), "--steps", "60", "--quiet"]) == 0
    return out
