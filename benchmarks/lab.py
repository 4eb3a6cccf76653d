"""The lab measured in a real browser (Debian's Chromium through Playwright), and its README screenshots.

    .venv/bin/python benchmarks/lab.py [--runs DIR] [--shots docs [--only score]] [--loads 5] [--moves 40]

Reports the time from navigation to the first drawn frame (median of --loads page loads; goal < 1 s) and the
redraw time of one t-slider move (median of --moves moves; goal < 30 ms) on 5,000 points and on a 28x28 image.
With --shots, writes one screenshot per panel (lab_*.png). --runs: a folder of runs to show (default: a
temporary one with a conditional shapes3 run and a gaussians8 run trained here, ~30 s, and the digits preset if
--digits). --only score (or prompt) writes just that panel's screenshot (no timings); the prompt panel needs a
text run (`diffkit train --text`) in --runs.
Run it alone: two torch processes on 2 cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from diffkit import machine
from diffkit.cli import main as cli
from diffkit.lab.app import create_app


def serve(runs: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(runs), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    return srv, f"http://127.0.0.1:{port}"


def move(page, value, event="input"):
    page.eval_on_selector("#fw-t", f"(el, v) => {{ el.value = v; el.dispatchEvent(new Event('{event}')); }}", str(value))


def redraw_ms(page, moves: int) -> float:
    page.evaluate("lab.timings.redraws = []")
    for k in range(moves):
        move(page, (k * 97) % 1000)
    return statistics.median(page.evaluate("lab.timings.redraws"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs")
    p.add_argument("--shots")
    p.add_argument("--digits", action="store_true", help="also train the digits preset (~2 min) for image panels")
    p.add_argument("--loads", type=int, default=5)
    p.add_argument("--moves", type=int, default=40)
    p.add_argument("--only", choices=["score", "prompt", "paths"],
                   help="with --shots: only this panel's screenshot, no timings")
    a = p.parse_args()
    print(machine.describe())
    runs = Path(a.runs) if a.runs else Path(tempfile.mkdtemp(prefix="lab-bench-"))
    if not (runs / "shapes3").exists():
        cli(["train", "--data", "shapes3", "--cond", "--out", str(runs / "shapes3"), "--quiet"])
    if not (runs / "gaussians8").exists():
        cli(["train", "--data", "gaussians8", "--out", str(runs / "gaussians8"), "--quiet"])
    for name, objective in (("gaussians8-edm", "edm"), ("gaussians8-flow", "flow")):
        if not (runs / name).exists():
            cli(["train", "--data", "gaussians8", "--objective", objective, "--out", str(runs / name), "--quiet"])
    if not (runs / "gaussians8-2rf").exists():
        cli(["reflow", "--teacher", str(runs / "gaussians8-flow"), "--out", str(runs / "gaussians8-2rf"), "--quiet"])
    if a.digits and not (runs / "digits").exists():
        cli(["train", "--data", "digits", "--cond", "--out", str(runs / "digits"), "--quiet"])
    srv, url = serve(runs)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        if a.only and a.shots:
            page.goto(url)
            page.wait_for_function("window.lab && window.lab.ready")
            {"score": score_shot, "prompt": prompt_shot, "paths": paths_shot}[a.only](page, Path(a.shots))
            browser.close()
            srv.should_exit = True
            return
        firsts = []
        for _ in range(a.loads):
            page.goto(url)
            page.wait_for_function("window.lab && window.lab.ready")
            firsts.append(page.evaluate("lab.timings.firstFrameMs"))
        page.evaluate("async () => { lab.forward = await (await fetch('/api/forward?data=spiral&n=5000')).json(); }")
        points_ms = redraw_ms(page, a.moves)
        page.select_option("#fw-data", "mnist5k")
        page.wait_for_function("window.lab.forward.kind === 'images' && window.lab.forward.shape[1] === 28")
        image_ms = redraw_ms(page, a.moves)
        print(f"first drawn frame after navigation: median {statistics.median(firsts):.0f} ms over {a.loads} loads "
              f"(min {min(firsts):.0f}, max {max(firsts):.0f}); goal < 1000 ms")
        print(f"t-slider redraw, 5,000 points: median {points_ms:.1f} ms over {a.moves} moves; goal < 30 ms")
        print(f"t-slider redraw, one 28x28 image: median {image_ms:.1f} ms over {a.moves} moves; goal < 30 ms")
        if a.shots:
            shots(page, url, Path(a.shots), runs)
        browser.close()
    srv.should_exit = True


def shots(page, url: str, out: Path, runs: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    page.goto(url)
    page.wait_for_function("window.lab && window.lab.ready")
    move(page, 300)
    page.locator("#forward").screenshot(path=str(out / "lab_forward.png"))
    page.locator("#schedules").screenshot(path=str(out / "lab_schedules.png"))
    image_run = "digits" if (runs / "digits").exists() else "shapes3"
    page.select_option("#rv-run", image_run)
    page.fill("#rv-steps", "20")
    page.click("#rv-go")
    page.wait_for_function("window.lab.reverse && window.lab.reverse.drawn === 0")
    page.evaluate("lab.reverse.frame = 12")
    page.click("#rv-step")
    page.locator("#reverse").screenshot(path=str(out / "lab_reverse.png"))
    page.select_option("#gd-run", "shapes3")
    page.eval_on_selector("#gd-w", "(el) => { el.value = 3; el.dispatchEvent(new Event('change')); }")
    page.wait_for_function("window.lab.guidance && window.lab.guidance.w === 3", timeout=60_000)
    page.locator("#guidance").screenshot(path=str(out / "lab_guidance.png"))
    page.fill("#tr-name", f"bench-{int(time.time())}")
    page.select_option("#tr-data", "moons")
    page.fill("#tr-steps", "1500")
    page.click("#tr-go")
    page.wait_for_function("window.lab.job && window.lab.job.state === 'done'", timeout=120_000)
    page.locator("#train").screenshot(path=str(out / "lab_train.png"))
    page.select_option("#sm-run", "shapes3")
    page.click("#sm-go")
    page.wait_for_function("window.lab.samplers !== undefined", timeout=300_000)
    page.locator("#samplers").screenshot(path=str(out / "lab_samplers.png"))
    score_shot(page, out)
    paths_shot(page, out)
    print(f"screenshots in {out}/lab_*.png")


def score_shot(page, out: Path) -> None:
    """The score panel on the gaussians8 run at t = 150: model and exact fields, the error curve."""
    out.mkdir(parents=True, exist_ok=True)
    page.select_option("#sf-run", "gaussians8")
    page.eval_on_selector("#sf-t", "(el) => { el.value = 150; el.dispatchEvent(new Event('change')); }")
    page.wait_for_function("window.lab.score && window.lab.score.t === 150 && window.lab.score.oracle", timeout=120_000)
    page.locator("#score").screenshot(path=str(out / "lab_score.png"))


def paths_shot(page, out: Path, steps: int = 4) -> None:
    """The diffusion and flow panel on the gaussians8 family (ddpm, edm, flow, 2-rectified flow) at 4 Euler steps."""
    page.eval_on_selector("#pf-steps", f"(el) => {{ el.value = {steps}; el.dispatchEvent(new Event('change')); }}")
    page.wait_for_function(f"window.lab.paths && window.lab.paths.steps === {steps} && window.lab.paths.runs.length === 4",
                           timeout=120_000)
    page.locator("#paths").screenshot(path=str(out / "lab_paths.png"))
    print("  " + "\n  ".join(page.text_content(f"#pf-read-{i}") for i in range(4)))


def prompt_shot(page, out: Path, prompt: str = "a large red circle at the top left") -> None:
    """The prompt panel on the first text run of the runs folder at w = 5."""
    out.mkdir(parents=True, exist_ok=True)
    page.fill("#pp-text", prompt)
    page.click("#pp-go")
    page.wait_for_function("window.lab.prompt !== undefined", timeout=120_000)
    page.locator("#prompt").screenshot(path=str(out / "lab_prompt.png"))


if __name__ == "__main__":
    main()
