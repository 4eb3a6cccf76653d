"""The lab in a real browser: Playwright drives Debian's Chromium against a live uvicorn server.

`make test` installs Chromium (apt-get) when it is missing; these tests are never skipped.
"""

from __future__ import annotations

import socket
import threading
import time

import diffusers
import pytest
import uvicorn
from playwright.sync_api import sync_playwright
from test_interop import tiny_unet
from test_interop_sd import tiny_pipeline

from diffkit.cli import main
from diffkit.lab.app import create_app

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, digits_text_run):
    import shutil

    runs = tmp_path_factory.mktemp("browserruns")
    shutil.copytree(digits_text_run, runs / "digitstext")
    assert main(["train", "--data", "shapes3", "--cond", "--out", str(runs / "cond"), "--steps", "150", "--quiet"]) == 0
    assert main(["train", "--data", "gaussians8", "--out", str(runs / "g8"), "--steps", "300", "--quiet"]) == 0
    for name, objective in (("ve", "edm"), ("fl", "flow")):
        assert main(["train", "--data", "gaussians8", "--objective", objective, "--out", str(runs / name),
                     "--steps", "300", "--quiet"]) == 0
    assert main(["reflow", "--teacher", str(runs / "fl"), "--out", str(runs / "fl2"), "--pairs", "1000",
                 "--train-steps", "300", "--quiet"]) == 0
    assert main(["distill", "--teacher", str(runs / "g8"), "--out", str(runs / "g8s"), "--steps", "2",
                 "--train-steps", "200", "--quiet"]) == 0
    # a diffusers DDIMPipeline folder (a tiny random UNet2DModel with attention), imported as a run
    pipe = diffusers.DDIMPipeline(unet=tiny_unet("attn"), scheduler=diffusers.DDIMScheduler(num_train_timesteps=1000))
    pipe.save_pretrained(runs.parent / "ddim-pipeline")
    assert main(["import", "--diffusers", str(runs.parent / "ddim-pipeline"), "--out", str(runs / "imported")]) == 0
    tiny_pipeline().save_pretrained(runs.parent / "sd-pipeline")  # and a tiny Stable-Diffusion-style pipeline
    assert main(["import", "--diffusers", str(runs.parent / "sd-pipeline"), "--out", str(runs / "sd")]) == 0
    # the playground's model, as its first use would train it (fewer steps)
    assert main(["train", "--data", "patterns", "--cond", "--steps", "100", "--batch-size", "32", "--channels", "16",
                 "--channel-mult", "1,2", "--attention", "", "--out", str(runs / "playground-patterns"), "--quiet"]) == 0
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(runs), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}", runs
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(server, browser):
    url, _ = server
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.lab && window.lab.ready", timeout=30_000)
    yield page
    assert not errors, errors
    page.close()


def show(page, section: str):
    """Open a section from the navigation, as a reader would (one section per screen)."""
    page.click(f"#nav a[data-section='{section}']")
    page.wait_for_function(f"window.lab.section === '{section}' && !document.getElementById('{section}').hidden")


def pixels(page, canvas_id: str) -> str:
    return page.evaluate(f"document.getElementById('{canvas_id}').toDataURL()")


def set_range(page, selector: str, value, event="input"):
    page.eval_on_selector(selector, f"(el, v) => {{ el.value = v; el.dispatchEvent(new Event('{event}')); }}", str(value))


def test_page_loads_and_draws_a_first_frame(page):
    first = page.evaluate("window.lab.timings.firstFrameMs")
    assert first is not None and first > 0
    assert page.text_content("#fw-read-a").startswith("linear: alpha_bar 0.9999")
    assert page.text_content("#fw-read-b").startswith("cosine:")
    assert page.locator("#rv-run option").count() == 10  # cond and the playground's model have classes:
    gd_runs = page.eval_on_selector("#gd-run", "el => [...el.options].map(o => o.value)")
    assert gd_runs == ["cond", "playground-patterns"]


def test_the_t_slider_noises_the_data(page):
    show(page, "forward")
    before_a, before_b = pixels(page, "fw-canvas-a"), pixels(page, "fw-canvas-b")
    read_before = page.text_content("#fw-read-a")
    set_range(page, "#fw-t", 600)
    assert page.text_content("#fw-t-out") == "600"
    read_after = page.text_content("#fw-read-a")
    assert read_after != read_before and "SNR" in read_after
    assert pixels(page, "fw-canvas-a") != before_a and pixels(page, "fw-canvas-b") != before_b
    # at the same t, the linear schedule has destroyed more of the signal than the cosine one
    ab = page.evaluate("[lab.schedules.schedules.linear.alpha_bar[600], lab.schedules.schedules.cosine.alpha_bar[600]]")
    assert ab[0] < ab[1]
    # an image set redraws the same way, from one image and one fixed noise
    page.select_option("#fw-data", "digits")
    page.wait_for_function("window.lab.forward.kind === 'images'")
    img = pixels(page, "fw-canvas-a")
    set_range(page, "#fw-t", 50)
    assert pixels(page, "fw-canvas-a") != img


def test_training_from_the_page(page, server):
    _, runs = server
    show(page, "train")
    page.fill("#tr-name", "fromthepage")
    page.select_option("#tr-data", "moons")
    page.fill("#tr-steps", "300")
    loss_before = pixels(page, "tr-loss")
    page.click("#tr-go")
    page.wait_for_function("window.lab.job && window.lab.job.losses.length >= 5", timeout=60_000)
    n_early = page.evaluate("window.lab.job.losses.length")
    page.wait_for_function("window.lab.job.state === 'done'", timeout=120_000)
    assert page.evaluate("window.lab.job.losses.length") > n_early  # the curve grew while training ran
    assert pixels(page, "tr-loss") != loss_before
    assert "done: run fromthepage" in page.text_content("#tr-status")
    how = page.text_content("#tr-how")  # what this machine trains with, as the job's log recorded it
    ran = (runs / "fromthepage" / "train_log.csv").read_text().splitlines()[-1].split(",")
    assert how.startswith(f"precision: {ran[-2]} (") and f"threads: {ran[-1]} (" in how
    page.wait_for_function("[...document.querySelectorAll('#rv-run option')].some(o => o.value === 'fromthepage')")
    assert (runs / "fromthepage" / "model.safetensors").exists()


def test_reverse_animation_plays_to_the_end(page):
    show(page, "reverse")
    page.select_option("#rv-run", "cond")
    page.fill("#rv-steps", "20")
    empty = pixels(page, "rv-canvas")
    page.click("#rv-go")
    page.wait_for_function("window.lab.reverse && window.lab.reverse.drawn === 0")
    first = pixels(page, "rv-canvas")
    assert first != empty
    page.click("#rv-play")
    page.wait_for_function("window.lab.reverse.done === true", timeout=30_000)
    assert page.text_content("#rv-frame") == "step 20 / 20"
    last = pixels(page, "rv-canvas")
    assert last != first
    page.check("#rv-x0")  # x0_hat at the last step is drawn instead of x_t
    assert page.evaluate("window.lab.reverse.drawn") == 19


def test_an_imported_diffusers_run_plays_in_the_reverse_panel(page):
    show(page, "reverse")
    page.select_option("#rv-run", "imported")
    page.fill("#rv-steps", "10")
    page.click("#rv-go")
    page.wait_for_function("window.lab.reverse && window.lab.reverse.drawn === 0", timeout=30_000)
    first = pixels(page, "rv-canvas")
    page.click("#rv-play")
    page.wait_for_function("window.lab.reverse.done === true", timeout=30_000)
    assert page.text_content("#rv-frame") == "step 10 / 10"
    assert pixels(page, "rv-canvas") != first


def test_guidance_slider_changes_the_samples(page):
    show(page, "guidance")
    page.wait_for_function("window.lab.guidance !== undefined", timeout=30_000)
    at_one = page.evaluate("window.lab.guidance")
    picture = pixels(page, "gd-canvas")
    set_range(page, "#gd-w", 7.5, event="change")
    page.wait_for_function("window.lab.guidance.w === 7.5", timeout=30_000)
    at_high = page.evaluate("window.lab.guidance")
    assert at_high["samples"] != at_one["samples"] and pixels(page, "gd-canvas") != picture
    assert "w = 7.5" in page.text_content("#gd-read")
    assert at_high["diversity"] < at_one["diversity"]  # guidance trades diversity for adherence


def test_prompt_panel_draws_the_prompt_and_guidance_changes_it(page):
    show(page, "prompt")
    assert page.eval_on_selector("#pp-run", "el => [...el.options].map(o => o.value)") == ["digitstext", "sd"]
    page.select_option("#pp-run", "digitstext")
    page.fill("#pp-text", "the digit 4")
    blank = pixels(page, "pp-canvas")
    page.click("#pp-go")
    page.wait_for_function("window.lab.prompt && window.lab.prompt.prompt === 'the digit 4'", timeout=30_000)
    first = page.evaluate("window.lab.prompt")
    assert first["prompt"] == "the digit 4" and first["w"] == 5 and len(first["samples"]) == 12
    assert pixels(page, "pp-canvas") != blank and "w = 5, 5 tokens" in page.text_content("#pp-read")
    set_range(page, "#pp-w", 0, event="change")
    page.wait_for_function("window.lab.prompt.w === 0", timeout=30_000)
    assert page.evaluate("window.lab.prompt.samples") != first["samples"]  # the same seed, another w
    page.fill("#pp-text", " ")
    page.press("#pp-text", "Enter")
    page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30_000)
    assert "the prompt is empty" in page.text_content("#status")


def test_prompt_panel_samples_an_imported_stable_diffusion_pipeline(page):
    show(page, "prompt")
    page.select_option("#pp-run", "sd")
    page.fill("#pp-text", "a red square")
    page.click("#pp-go")
    page.wait_for_function("window.lab.prompt && window.lab.prompt.prompt === 'a red square'", timeout=60_000)
    got = page.evaluate("window.lab.prompt")
    assert len(got["samples"]) == 12 and len(set(map(str, got["samples"]))) > 1  # 12 decoded 16x16 RGB samples
    assert page.text_content("#pp-read").startswith("w = 5, 12 tokens")  # letters of the tiny CLIP vocabulary


def test_redraw_is_fast_in_the_browser(page):
    """The forward panel recomputes x_t in the browser: measure a slider move on 5,000 points and a 28x28 image
    (reported by benchmarks/lab.py; asserted here only to be a real number)."""
    page.evaluate("async () => { lab.forward = await (await fetch('/api/forward?data=spiral&n=5000')).json(); }")
    for t in (100, 400, 800):
        set_range(page, "#fw-t", t)
    ms = page.evaluate("window.lab.timings.lastRedrawMs")
    assert ms is not None and ms > 0 and page.evaluate("lab.forward.x0.length") == 5000


def test_score_panel_draws_both_fields_and_the_error_curve(page):
    show(page, "score")
    page.select_option("#sf-run", "g8")
    page.wait_for_function("window.lab.score && window.lab.score.oracle !== null", timeout=60_000)
    first = {k: pixels(page, k) for k in ("sf-model", "sf-oracle", "sf-curve")}
    blank = page.evaluate("(() => { const c = document.createElement('canvas'); c.width = 300; c.height = 300; "
                          "const x = c.getContext('2d'); x.fillStyle = '#fff'; x.fillRect(0, 0, 300, 300); return c.toDataURL(); })()")
    assert first["sf-model"] != blank and first["sf-oracle"] != blank
    set_range(page, "#sf-t", 600, event="change")
    page.wait_for_function("window.lab.score.t === 600", timeout=60_000)
    assert pixels(page, "sf-model") != first["sf-model"] and pixels(page, "sf-curve") != first["sf-curve"]
    assert "score error" in page.text_content("#sf-read")
    page.select_option("#sf-run", "cond")  # shapes3: no closed form
    page.wait_for_function("window.lab.score.oracle === null", timeout=60_000)
    assert "not a Gaussian mixture" in page.text_content("#sf-oracle-cap")


def test_diffusion_and_flow_panel_draws_each_path_and_reflow_is_straighter(page):
    """The panel picks one run per formulation, sends the same noises along each ODE and reads out S and NFE;
    the step slider redraws at the new number of calls."""
    show(page, "paths")
    page.wait_for_function("window.lab.paths && window.lab.paths.runs.length === 4", timeout=60_000)
    assert [page.input_value(f"#pf-{k}") for k in ("ddpm", "edm", "flow", "reflow")] == ["g8", "ve", "fl", "fl2"]
    S = {r["name"]: r["straightness"] for r in page.evaluate("window.lab.paths.runs")}
    assert S["fl2"] < 0.5 * S["fl"], S
    reads = [page.text_content(f"#pf-read-{i}") for i in range(4)]
    assert reads[0].startswith("VP (ddpm) (g8)") and reads[3].startswith("2-rectified flow (fl2)")
    assert all("8 calls: path S" in r and "(ODE)" in r for r in reads)
    before = [pixels(page, f"pf-canvas-{i}") for i in range(4)]
    assert len(set(before)) == 4 and "EDM" in page.text_content("#pf-legend")
    set_range(page, "#pf-steps", 1, event="change")
    page.wait_for_function("window.lab.paths.steps === 1", timeout=60_000)
    assert all("1 call: path S" in page.text_content(f"#pf-read-{i}") for i in range(4))
    assert pixels(page, "pf-canvas-2") != before[2]
    page.select_option("#pf-edm", "")
    page.wait_for_function("window.lab.paths.runs.length === 3", timeout=60_000)
    assert page.text_content("#pf-read-1") == "EDM: no run"


def test_few_steps_panel_puts_the_student_beside_its_teacher(page):
    """The panel picks the distilled student, samples it and its teacher from the same noise at the slider's
    number of calls, and the student (which learned two steps) lands nearer the data than the teacher's 2 calls."""
    show(page, "fewsteps")
    assert page.input_value("#fs-run") == "g8s"
    page.wait_for_function("window.lab.fewsteps && window.lab.fewsteps.teacher.steps === 4", timeout=60_000)
    set_range(page, "#fs-nfe", 2, event="change")
    page.wait_for_function("window.lab.fewsteps.teacher.steps === 2", timeout=60_000)
    res = page.evaluate("window.lab.fewsteps")
    assert res["teacher"]["calls"] == 2 and res["student"]["calls"] == 2 and res["method"] == "progressive"
    assert res["student"]["energy"] * 3 < res["teacher"]["energy"], (res["student"]["energy"], res["teacher"]["energy"])
    assert "2 network calls per sample" in page.text_content("#fs-student-cap")
    assert "energy distance to the data" in page.text_content("#fs-teacher-cap")
    assert pixels(page, "fs-teacher") != pixels(page, "fs-student")
    set_range(page, "#fs-nfe", 8, event="change")
    page.wait_for_function("window.lab.fewsteps.teacher.steps === 8", timeout=60_000)
    assert page.evaluate("window.lab.fewsteps.student.steps") == 2  # it stops at the steps it learned


def test_edit_panel_inpaints_under_a_painted_mask_and_keeps_the_rest(page):
    show(page, "edit")
    page.select_option("#ed-run", "digitstext")
    page.wait_for_function("window.lab.edit && window.lab.edit.run === 'digitstext' && !window.lab.editPending",
                           timeout=30_000)
    assert page.evaluate("window.lab.edit.mask.reduce((a, b) => a + b, 0)") == 32  # the bottom half, preset
    page.locator("#ed-input").scroll_into_view_if_needed()
    box = page.locator("#ed-input").bounding_box()
    page.mouse.move(box["x"] + 3, box["y"] + 3)
    page.mouse.down()
    page.mouse.move(box["x"] + 45, box["y"] + 3, steps=8)  # a stroke over the top row's first two cells
    page.mouse.up()
    assert page.input_value("#ed-preset") == "painted"
    mask = page.evaluate("window.lab.edit.mask")
    assert sum(mask) == 34 and mask[0] == mask[1] == 1 and mask[2] == 0
    page.fill("#ed-prompt", "the digit 4")
    page.click("#ed-go")
    page.wait_for_function("window.lab.edit.result !== null", timeout=60_000)
    e = page.evaluate("window.lab.edit")
    assert e["kept_change"] <= 1 / 255
    kept = [i for i, m in enumerate(mask) if not m]
    assert all(abs(e["result"][i] - e["input"][i]) <= 1 for i in kept)  # 0..255 integers
    assert any(e["result"][i] != e["input"][i] for i, m in enumerate(mask) if m)
    assert "kept pixels changed by at most" in page.text_content("#ed-read")
    page.select_option("#ed-preset", "none")
    page.wait_for_function("window.lab.edit.result === null && !window.lab.editPending", timeout=30_000)
    set_range(page, "#ed-strength", 1.0)
    page.click("#ed-go")
    page.wait_for_function("window.lab.edit.result !== null", timeout=60_000)
    assert "img2img at strength 1" in page.text_content("#ed-read")


# --- the second edition: the journey, the four-image reverse view, layout and accessibility ----------------

def test_the_journey_walks_every_section_with_its_quick_checks(page):
    """Start -> every lesson -> the tools, by the lesson mode's next links; one question answered right, one
    wrong: the explanation shows, the score counts the first answer only and survives a reload."""
    sections = page.evaluate("SECTIONS")
    assert sections[0] == "start" and sections[1] == "noise" and len(sections) >= 14
    page.click("#journey-go")
    page.wait_for_function("window.lab.section === 'noise'")
    questions = page.locator("#qc-noise .question")
    assert questions.count() == 2
    questions.nth(0).locator("button").nth(1).click()  # right
    questions.nth(1).locator("button").nth(0).click()  # wrong
    assert questions.nth(0).locator(".why").text_content().startswith("Right")
    wrong = questions.nth(1).locator(".why").text_content()
    assert wrong.startswith("Not quite.") and "neighbouring pixels" in wrong  # it explains itself
    questions.nth(1).locator("button").nth(2).click()  # a second try shows its explanation, the score keeps the first
    assert questions.nth(1).locator(".why").text_content().startswith("Right")
    assert page.text_content("#qc-noise .qc-score") == "(1/2 right)"
    assert page.text_content("[data-badge='noise']") == "1/2"
    total = page.evaluate("quizScore().total")
    assert page.text_content("#nav-score") == f"quick checks: 1/{total}"
    visited = ["noise"]
    while page.locator(f"#{visited[-1]} .steps .next").count():
        page.locator(f"#{visited[-1]} .steps .next").click()
        page.wait_for_function(f"window.lab.section !== '{visited[-1]}'")
        here = page.evaluate("window.lab.section")
        hidden = page.evaluate("SECTIONS.filter((s) => document.getElementById(s).hidden).length")
        assert hidden == len(sections) - 1 and page.locator(f"#{here}").is_visible()
        if here in page.evaluate("LESSONS.map((l) => l.id)"):
            assert page.locator(f"#qc-{here} .question").count() >= 1 and page.locator(f"#{here} .formula").count() >= 1
        visited.append(here)
    assert visited == sections[1:]
    page.reload()
    page.wait_for_function("window.lab && window.lab.ready")
    assert page.text_content("#nav-score") == f"quick checks: 1/{total}"  # kept in the browser
    assert "1/2" in page.text_content("#score-table") and page.evaluate("window.lab.section") == sections[-1]
    page.goto(page.url.split("#")[0] + "#start")
    page.click("#journey-reset")
    assert page.text_content("#nav-score") == "" and page.evaluate("localStorage.getItem('diffkit-lab-quiz')") is None


def test_the_reverse_view_shows_the_four_images_of_each_step(page):
    show(page, "reverse")
    page.select_option("#rv-run", "digitstext")
    page.fill("#rv-steps", "8")
    page.click("#rv-go")
    page.wait_for_function("window.lab.reverse && window.lab.reverse.drawn === 0", timeout=60_000)
    assert page.locator("#rv-four").is_visible()
    rv = page.evaluate("({times: lab.reverse.times, eps: lab.reverse.eps_hat.length, n: lab.reverse.frames.length})")
    assert rv["n"] == rv["eps"] == len(rv["times"]) == 8
    snr = [t["snr_db"] for t in rv["times"]]
    assert snr == sorted(snr) and snr[0] < -10 < 10 < snr[-1]  # from noise towards data
    blank = pixels(page, "rv-final")
    first = {k: pixels(page, k) for k in ("rv-xt", "rv-eps", "rv-x0hat")}
    assert len(set(first.values())) == 3 and blank not in first.values()
    read = page.text_content("#rv-read")
    assert read.startswith("step 1: t = ") and f"SNR {snr[0]:.1f} dB" in read and "x0_hat +" in read
    page.click("#rv-step")
    assert page.evaluate("lab.reverse.drawn") == 1 and pixels(page, "rv-xt") != first["rv-xt"]
    assert f"SNR {snr[1]:.1f} dB" in page.text_content("#rv-read") and pixels(page, "rv-final") == blank
    page.click("#rv-play")
    page.wait_for_function("window.lab.reverse.done === true", timeout=30_000)
    assert pixels(page, "rv-final") != blank and page.text_content("#rv-read").endswith("(the final sample)")


def test_every_section_fits_the_width_and_axe_finds_no_serious_violation(page):
    """At 1280 and 820 px: no horizontal scrolling on any section; axe-core: no serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    axe, found = Axe(), {}
    for width in (1280, 820):
        page.set_viewport_size({"width": width, "height": 900})
        for section in page.evaluate("SECTIONS"):
            page.evaluate(f"location.hash = '{section}'")
            page.wait_for_function(f"window.lab.section === '{section}'")
            wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert wide <= 0, (width, section, wide)
            if width == 1280 or section in ("start", "noise"):
                violations = axe.run(page).response["violations"]
                bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]])
                       for v in violations if v["impact"] in ("serious", "critical")]
                found[(width, section)] = bad
    assert not any(found.values()), {k: v for k, v in found.items() if v}


def test_sliders_and_buttons_work_from_the_keyboard(page):
    show(page, "forward")
    page.focus("#fw-t")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.text_content("#fw-t-out") == "2"  # the slider's input event redraws
    show(page, "noise")
    before = page.evaluate("lab.noise.inside")
    page.focus("#nz-go")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    assert page.evaluate("lab.noise.inside") != before
    # every figure has a text alternative
    assert page.evaluate("[...document.querySelectorAll('canvas')].every((c) => c.getAttribute('aria-label'))")


def test_the_playground_destroys_and_rebuilds_a_checkerboard(page):
    show(page, "playground")
    page.wait_for_function("window.lab.playground.ready === true", timeout=30_000)
    assert page.locator("#pg-train").is_hidden() and "model ready" in page.text_content("#pg-train-read")
    page.select_option("#pg-pattern", "checkerboard")
    set_range(page, "#pg-strength", 0.5)
    blank = pixels(page, "pg-result")
    page.click("#pg-go")
    page.wait_for_function("window.lab.playground.result !== undefined", timeout=60_000)
    res = page.evaluate("lab.playground.result")
    assert res["input_reads"] == "checkerboard" and res["result_reads"] == "checkerboard", res["result_reads"]
    assert pixels(page, "pg-result") != blank and "the rebuilt pattern as checkerboard" in page.text_content("#pg-read")
    n = page.evaluate("lab.playground.frames")
    assert n == len(res["forward"]) + len(res["reverse"]) and page.text_content("#pg-frame").startswith("forward 0")
    set_range(page, "#pg-speed", 30)
    page.click("#pg-play")
    page.wait_for_function("window.lab.playground.played === true", timeout=30_000)
    assert page.evaluate("lab.playground.frame") == n - 1 and page.text_content("#pg-frame").startswith("rebuild")
    first = pixels(page, "pg-view")
    page.select_option("#pg-direction", "-1")
    page.evaluate("lab.playground.played = false")
    page.click("#pg-play")
    page.wait_for_function("window.lab.playground.played === true", timeout=30_000)
    assert page.evaluate("lab.playground.frame") == 0 and pixels(page, "pg-view") != first
    set_range(page, "#pg-time", 3)
    assert page.text_content("#pg-frame").startswith("forward 3")
    # a drawn pattern: painting switches to it and the rebuild starts from the drawing
    page.click("#pg-clear")
    box = page.locator("#pg-draw").bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 5, box["y"] + box["height"] / 2, steps=20)
    page.mouse.up()
    assert page.input_value("#pg-pattern") == "drawn"
    page.evaluate("lab.playground.result = undefined")
    page.click("#pg-go")
    page.wait_for_function("window.lab.playground.result !== undefined", timeout=60_000)
    drawn = page.evaluate("lab.playground.result.input")
    assert sum(v > 0 for v in drawn) == 16  # one painted row of 16 cells


def test_drawn_points_are_trained_on_from_the_page(page, server):
    import json

    _, runs = server
    show(page, "draw")
    box = page.locator("#dr-canvas").bounding_box()
    for row in (0.3, 0.7):
        page.mouse.move(box["x"] + 40, box["y"] + row * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] - 40, box["y"] + row * box["height"], steps=20)
        page.mouse.up()
    n = page.evaluate("lab.draw.n")
    assert n >= 100 and f"{n} points" in page.text_content("#dr-read")
    page.fill("#dr-name", "drawn")
    page.fill("#dr-steps", "200")
    page.click("#dr-go")
    page.wait_for_function("window.lab.draw.state === 'done'", timeout=120_000)
    assert page.evaluate("lab.draw.samples") == 400 and page.evaluate("lab.draw.losses") >= 10
    assert "trained on your" in page.text_content("#dr-read")
    config = json.loads((runs / "drawn" / "config.json").read_text())
    assert "/.uploads/" in config["data"]["spec"]
    assert config["fitted"]["data_sha256"] == page.evaluate("lab.draw.sha256")
