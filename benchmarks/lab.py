"""The lab measured in a real browser (Debian's Chromium through Playwright), and its README screenshots.

    .venv/bin/python benchmarks/lab.py [--runs DIR] [--shots docs [--only score]] [--loads 5] [--moves 40]

Reports the time from navigation to the first drawn frame (median of --loads page loads; goal < 1 s) and the
redraw time of one t-slider move (median of --moves moves; goal < 30 ms) on 5,000 points and on a 28x28 image.
Then each section's first draw (from the reader's first action there to the answer on screen; the playground's
first use, which trains its model, is timed apart). With --shots, writes one screenshot per section
(lab_SECTION.png) and the page at 1280 and 820 px (lab_layout_*.png). --runs: a folder of runs to show (default: a
temporary one with a conditional shapes3 run and a gaussians8 run trained here, ~30 s, and the digits preset if
--digits). --only score (or prompt) writes just that panel's screenshot (no timings); the prompt panel needs a
text run (`diffkit train --text`) in --runs.
Run it alone: two torch processes on 2 cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from diffkit import machine
from diffkit.cli import main as cli
from diffkit.lab.app import create_app


@contextlib.contextmanager
def serving(runs: Path):
    """The lab on a free local port, for the with-block (its URL); then shut down, its thread waited for, so no
    request's torch work is still running when the interpreter exits (a daemon thread cut off inside torch ended the
    process with 'terminate called'), whether the block ends or raises."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(runs), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        while not srv.started:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=60)
        if thread.is_alive():
            print("warning: the lab server did not stop within 60 s", file=sys.stderr)


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
    if not (runs / "gaussians8-2step").exists():
        cli(["distill", "--teacher", str(runs / "gaussians8"), "--out", str(runs / "gaussians8-2step"), "--steps", "2",
             "--quiet"])
    with serving(runs) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        if a.only and a.shots:
            page.goto(url + "#" + a.only)  # one section per screen: the panel's own
            page.wait_for_function("window.lab && window.lab.ready")
            {"score": score_shot, "prompt": prompt_shot, "paths": paths_shot}[a.only](page, Path(a.shots))
            browser.close()
            return
        firsts = []
        for _ in range(a.loads):
            page.goto(url)
            page.wait_for_function("window.lab && window.lab.ready")
            firsts.append(page.evaluate("lab.timings.firstFrameMs"))
        page.evaluate("location.hash = 'forward'")
        page.wait_for_function("window.lab.section === 'forward'")
        page.evaluate("async () => { lab.forward = await (await fetch('/api/forward?data=spiral&n=5000')).json(); }")
        points_ms = redraw_ms(page, a.moves)
        page.select_option("#fw-data", "mnist5k")
        page.wait_for_function("window.lab.forward.kind === 'images' && window.lab.forward.shape[1] === 28")
        image_ms = redraw_ms(page, a.moves)
        print(f"first drawn frame after navigation: median {statistics.median(firsts):.0f} ms over {a.loads} loads "
              f"(min {min(firsts):.0f}, max {max(firsts):.0f}); goal < 1000 ms")
        print(f"t-slider redraw, 5,000 points: median {points_ms:.1f} ms over {a.moves} moves; goal < 30 ms")
        print(f"t-slider redraw, one 28x28 image: median {image_ms:.1f} ms over {a.moves} moves; goal < 30 ms")
        out = Path(a.shots) if a.shots else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        section_draws(page, url, runs, out)
        if out is not None:
            layout_shots(browser, url, out)
        browser.close()


# per section: what a reader does first there (None: nothing, the section draws on arrival) and what says its
# answer is on screen (a JS condition); a click is timed from the click, an arrival from the navigation
FIRST_DRAW = [
    ("start", None, "true"),
    ("noise", None, "lab.noise.n > 0"),
    ("forward", None, "lab.timings.lastRedrawMs > 0"),
    ("schedules", None, "true"),
    ("reverse", "#rv-go", "lab.reverse && lab.reverse.drawn === 0"),
    ("samplers", "#sm-go", "lab.samplersDrawn > 0"),
    ("guidance", None, "lab.guidance !== undefined"),
    ("score", None, "lab.score !== undefined"),
    ("prompt", None, "lab.prompt !== undefined"),
    ("paths", None, "lab.paths !== undefined"),
    ("fewsteps", None, "lab.fewsteps !== undefined"),
    ("edit", None, "lab.edit && lab.edit.input && !lab.editPending"),
    ("edit", "#ed-go", "lab.edit && lab.edit.result"),
    ("playground", "#pg-go", "lab.playground.result !== undefined"),
    ("draw", "#dr-example", "lab.draw.n > 0"),
    ("train", None, "true"),
]


def section_draws(page, url: str, runs: Path, out: Path | None) -> None:
    """Each section's first draw: from the navigation to its first picture (sections that draw on arrival), or
    from the reader's first click there to the answer; with out, a screenshot of each (lab_SECTION.png)."""
    page.goto(url)
    page.wait_for_function("window.lab && window.lab.ready")
    page.evaluate("location.hash = 'playground'")
    page.wait_for_function("document.getElementById('pg-train-read').textContent !== ''")
    if not page.evaluate("lab.playground.ready"):  # the playground's first use: trains its model, timed
        t0 = time.perf_counter()
        page.click("#pg-train")
        page.wait_for_function("window.lab.playground.ready === true", timeout=900_000, polling=500)
        print(f"the playground's first use: its model trained in {time.perf_counter() - t0:.0f} s")
    print(f"{'section':12s} {'first draw ms':>13s}  timed from")
    for section, action, done in FIRST_DRAW:
        if section == "prompt" and not (runs / "t2i").exists() or section == "edit" and not (runs / "digits").exists():
            continue
        t0 = page.evaluate("performance.now()")
        page.evaluate(f"location.hash = '{section}'")
        page.wait_for_function(f"window.lab.section === '{section}'")
        if section == "reverse":
            page.select_option("#rv-run", "digits" if (runs / "digits").exists() else "shapes3")
            page.fill("#rv-steps", "20")
        if section == "samplers":
            page.select_option("#sm-run", "shapes3")
        if action:
            t0 = page.evaluate("performance.now()")
            page.click(action)
        page.wait_for_function(done, timeout=300_000)
        ms = page.evaluate("performance.now()") - t0
        print(f"{section:12s} {ms:13.0f}  {'the click on ' + action if action else 'the navigation'}")
        if section == "samplers":  # the screenshot shows every sampler's curve
            page.wait_for_function("lab.samplers !== undefined", timeout=300_000)
        if section == "reverse":
            page.evaluate("lab.reverse.frame = 12")
            page.click("#rv-step")
        if section == "train" and out is not None:  # the screenshot shows a run trained from the page
            page.fill("#tr-name", f"bench-{int(time.time())}")
            page.select_option("#tr-data", "moons")
            page.fill("#tr-steps", "1500")
            page.click("#tr-go")
            page.wait_for_function("window.lab.job && window.lab.job.state === 'done'", timeout=300_000)
        if out is not None:
            page.locator(f"#{section}").screenshot(path=str(out / f"lab_{section}.png"))


def layout_shots(browser, url: str, out: Path) -> None:
    """The page at a laptop's and a tablet's width (lab_layout_1280.png, lab_layout_820.png)."""
    for width in (1280, 820):
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.goto(url + "#noise")
        page.wait_for_function("window.lab && window.lab.ready")
        page.screenshot(path=str(out / f"lab_layout_{width}.png"))
        wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        print(f"{width} px: horizontal overflow {wide} px")
        page.close()


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
    page.wait_for_function(f"window.lab.prompt !== undefined && window.lab.prompt.prompt === {prompt!r}",
                           timeout=120_000)
    page.locator("#prompt").screenshot(path=str(out / "lab_prompt.png"))


if __name__ == "__main__":
    main()
