// diffkit lab: every panel draws on a canvas from data the server sends once; the forward panel recomputes
// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps in the browser at every slider move.
"use strict";

const lab = { timings: { redraws: [] }, schedules: null, forward: null, runs: [], reverse: null, job: null };
window.lab = lab;
const $ = (id) => document.getElementById(id);
const COLORS = { linear: "#d62728", cosine: "#1f77b4", sigmoid: "#2ca02c", scaled_linear: "#9467bd" };
const CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function say(msg, error = false) {
  const s = $("status");
  s.textContent = msg;
  s.className = error ? "error" : "";
}

function options(select, values, labels) {
  select.innerHTML = "";
  values.forEach((v, i) => {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = labels ? labels[i] : v;
    select.appendChild(o);
  });
}

// --- drawing ------------------------------------------------------------------------------------
function clear(ctx) {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
}

// points [[x, y], ...] in a square view of half-width `range`; colors: one per point or one for all
function drawPoints(canvas, pts, range, colors, size = 2) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  clear(ctx);
  const sx = W / (2 * range), sy = H / (2 * range);
  for (let i = 0; i < pts.length; i++) {
    ctx.fillStyle = Array.isArray(colors) ? colors[i] : colors;
    ctx.fillRect(W / 2 + pts[i][0] * sx - size / 2, H / 2 - pts[i][1] * sy - size / 2, size, size);
  }
}

// flat pixel arrays (0..255) of shape [C, H, W], tiled in a grid
function drawImages(canvas, images, shape) {
  const [C, H, W] = shape, n = images.length, cols = Math.ceil(Math.sqrt(n)), rows = Math.ceil(n / cols);
  const ctx = canvas.getContext("2d");
  clear(ctx);
  const tile = document.createElement("canvas");
  tile.width = cols * (W + 1);
  tile.height = rows * (H + 1);
  const tctx = tile.getContext("2d"), img = tctx.createImageData(tile.width, tile.height);
  img.data.fill(255);
  images.forEach((px, k) => {
    const ox = (k % cols) * (W + 1), oy = Math.floor(k / cols) * (H + 1);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const o = 4 * ((oy + y) * tile.width + ox + x);
      for (let c = 0; c < 3; c++) img.data[o + c] = px[(C === 1 ? 0 : c) * H * W + y * W + x];
    }
  });
  tctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  const scale = Math.min(canvas.width / tile.width, canvas.height / tile.height);
  ctx.drawImage(tile, 0, 0, tile.width * scale, tile.height * scale);
}

function plotCurves(canvas, series, yRange, marker, yLabel) {
  // series: [{values, color}], x = index; marker: x index to mark
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, pad = 30;
  clear(ctx);
  const [lo, hi] = yRange, n = Math.max(...series.map((s) => s.values.length));
  const X = (i) => pad + (W - pad - 8) * i / Math.max(1, n - 1), Y = (v) => H - pad - (H - pad - 8) * (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo);
  ctx.strokeStyle = "#999";
  ctx.strokeRect(pad, 8, W - pad - 8, H - pad - 8);
  ctx.fillStyle = "#444";
  ctx.font = "11px sans-serif";
  ctx.fillText(yLabel, pad + 4, 20);
  ctx.fillText(String(hi), 2, 14);
  ctx.fillText(String(lo), 2, H - pad);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    s.values.forEach((v, i) => (i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v))));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  if (marker !== undefined) {
    ctx.strokeStyle = "#000";
    ctx.beginPath();
    ctx.moveTo(X(marker), 8);
    ctx.lineTo(X(marker), H - pad);
    ctx.stroke();
  }
}

// --- forward + schedules --------------------------------------------------------------------------
function noised(abar) {
  const f = lab.forward, a = Math.sqrt(abar), s = Math.sqrt(1 - abar), x0 = f.x0, eps = f.eps;
  if (f.kind === "points") return x0.map((p, i) => [a * p[0] + s * eps[i][0], a * p[1] + s * eps[i][1]]);
  const out = new Array(x0.length);
  for (let i = 0; i < x0.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(((a * x0[i] + s * eps[i]) + 1) * 127.5)));
  return out;
}

function readout(name, t) {
  const ab = lab.schedules.schedules[name].alpha_bar[t], snr = lab.schedules.schedules[name].snr_db[t];
  return `${name}: alpha_bar ${ab.toFixed(4)}  SNR ${snr.toFixed(1)} dB  signal ${(100 * ab).toFixed(1)}%  noise ${(100 * (1 - ab)).toFixed(1)}%`;
}

function drawForward() {
  const t0 = performance.now(), t = +$("fw-t").value;
  $("fw-t-out").textContent = t;
  for (const side of ["a", "b"]) {
    const name = $("fw-sched-" + side).value, abar = lab.schedules.schedules[name].alpha_bar[t];
    const canvas = $("fw-canvas-" + side), x = noised(abar);
    if (lab.forward.kind === "points") drawPoints(canvas, x, 3.5, "#1f77b4");
    else drawImages(canvas, [x], lab.forward.shape);
    $("fw-read-" + side).textContent = readout(name, t);
  }
  drawSchedules(t);
  const ms = performance.now() - t0;
  lab.timings.redraws.push(ms);
  lab.timings.lastRedrawMs = ms;
  if (lab.timings.firstFrameMs === undefined) lab.timings.firstFrameMs = performance.now();
}

function drawSchedules(t) {
  const names = Object.keys(lab.schedules.schedules);
  plotCurves($("sc-alpha"), names.map((n) => ({ values: lab.schedules.schedules[n].alpha_bar, color: COLORS[n] })), [0, 1], t, "alpha_bar");
  plotCurves($("sc-snr"), names.map((n) => ({ values: lab.schedules.schedules[n].snr_db, color: COLORS[n] })), [-40, 40], t, "SNR (dB)");
}

async function loadForward() {
  lab.forward = await api(`/api/forward?data=${encodeURIComponent($("fw-data").value)}&n=2000&seed=0`);
  drawForward();
}

// --- runs -----------------------------------------------------------------------------------------
async function loadRuns() {
  lab.runs = (await api("/api/runs")).runs.filter((r) => !r.error);
  const names = lab.runs.map((r) => r.name);
  for (const id of ["rv-run", "sm-run"]) options($(id), names);
  const cond = lab.runs.filter((r) => r.cond);
  options($("gd-run"), cond.map((r) => r.name));
  options($("sm-run"), lab.runs.filter((r) => r.kind === "points").map((r) => r.name));
  guidanceClasses();
  scoreRuns();
  pathRuns();
  options($("pp-run"), lab.runs.filter((r) => r.text).map((r) => r.name));
  options($("fs-run"), lab.runs.filter((r) => r.distilled && !r.text).map((r) => r.name));
  editRuns();
}

const run = (name) => lab.runs.find((r) => r.name === name);

// --- reverse ----------------------------------------------------------------------------------------
async function sampleReverse() {
  const r = run($("rv-run").value);
  if (!r) return say("train a run first (the Train panel)", true);
  say("sampling...");
  const steps = +$("rv-steps").value;
  lab.reverse = await api("/api/sample", { run: r.name, sampler: $("rv-sampler").value, steps, n: r.kind === "points" ? 500 : 16, seed: 0 });
  lab.reverse.frame = 0;
  lab.reverse.run = r;
  $("rv-four").hidden = lab.reverse.kind !== "images";
  $("rv-read").textContent = "";
  for (const id of ["rv-play", "rv-pause", "rv-step"]) $(id).disabled = false;
  say("");
  drawReverse();
}

function drawReverse() {
  const rv = lab.reverse, k = rv.frame, frames = $("rv-x0").checked ? rv.x0_hat : rv.frames;
  $("rv-frame").textContent = `step ${k + 1} / ${frames.length}`;
  const canvas = $("rv-canvas");
  if (rv.kind === "points") {
    drawPoints(canvas, frames[k], 3.5 * scaleOf(rv), "#1f77b4");
    const ctx = canvas.getContext("2d"), W = canvas.width, s = W / (7 * scaleOf(rv));
    ctx.strokeStyle = "rgba(214,39,40,0.8)";
    for (let p = 0; p < 8; p++) {  // the paths of a few points
      ctx.beginPath();
      for (let j = 0; j <= k; j++) {
        const [x, y] = frames[j][p];
        j ? ctx.lineTo(W / 2 + x * s, W / 2 - y * s) : ctx.moveTo(W / 2 + x * s, W / 2 - y * s);
      }
      ctx.stroke();
    }
  } else {
    drawImages(canvas, frames[k], rv.shape);
    drawFour(rv, k);
  }
  if (rv.times.length) stepReadout(rv, k);
  lab.reverse.drawn = k;
}

// the articles' four pictures per step, for the first image: x_t, eps_hat, x0_hat and (at the end) the sample
function drawFour(rv, k) {
  const last = k === rv.frames.length - 1, one = (a) => [a[0]];
  $("rv-four").hidden = false;
  drawImages($("rv-xt"), one(rv.frames[k]), rv.shape);
  if (rv.eps_hat) drawImages($("rv-eps"), one(rv.eps_hat[k]), rv.shape);
  else clear($("rv-eps").getContext("2d"));
  $("rv-eps-cap").textContent = rv.eps_hat ? "\u03b5\u0302, the noise it sees" : "\u03b5\u0302 lives in latent space";
  drawImages($("rv-x0hat"), one(rv.x0_hat[k]), rv.shape);
  if (last) drawImages($("rv-final"), one(rv.samples), rv.shape);
  else clear($("rv-final").getContext("2d"));
}

// the step's time, alpha_bar and SNR, and the DDIM form of the step with its numbers
function stepReadout(rv, k) {
  const tm = rv.times[k], last = k === rv.frames.length - 1;
  const next = k + 1 < rv.times.length ? rv.times[k + 1].alpha_bar : 1;
  $("rv-read").textContent = `step ${k + 1}: t = ${tm.t.toFixed(0)}, alpha_bar ${tm.alpha_bar.toFixed(4)}, SNR ${tm.snr_db.toFixed(1)} dB` +
    `  ->  x_next = ${Math.sqrt(next).toFixed(3)} x0_hat + ${Math.sqrt(1 - next).toFixed(3)} eps_hat` +
    (last ? "  (the final sample)" : "");
}

function scaleOf(rv) {  // points come back in the data's own units: fit the view to the final samples
  if (!rv.scale) rv.scale = Math.max(1e-6, ...rv.samples.flat().map(Math.abs)) / 3;
  return rv.scale;
}

function playReverse() {
  clearInterval(lab.reverse.timer);
  lab.reverse.timer = setInterval(() => {
    if (lab.reverse.frame >= lab.reverse.frames.length - 1) { clearInterval(lab.reverse.timer); lab.reverse.done = true; return; }
    lab.reverse.frame += 1;
    drawReverse();
  }, 60);
}

// --- guidance -------------------------------------------------------------------------------------
function guidanceClasses() {
  const r = run($("gd-run").value);
  options($("gd-class"), r ? r.classes.map((_, i) => i) : [], r ? r.classes.map(String) : []);
}

let guidanceBusy = null;
async function drawGuidance() {
  const r = run($("gd-run").value), w = +$("gd-w").value;
  $("gd-w-out").textContent = w;
  if (!r) return;
  const req = { run: r.name, cls: +$("gd-class").value, w, n: r.kind === "points" ? 400 : 16, seed: 0 };
  guidanceBusy = req;
  const g = await api("/api/guidance", req);
  if (guidanceBusy !== req) return;  // a later slider move wins
  const canvas = $("gd-canvas");
  if (g.kind === "points") drawPoints(canvas, g.samples, Math.max(...g.samples.flat().map(Math.abs)) * 1.1, CLASS_COLORS[req.cls % 10], 3);
  else drawImages(canvas, g.samples, g.shape);
  $("gd-read").textContent = `w = ${w}: diversity ${g.diversity.toFixed(3)}  adherence ${(100 * g.adherence).toFixed(1)}%`;
  lab.guidance = { w, samples: g.samples, diversity: g.diversity, adherence: g.adherence };
}

// --- prompt ---------------------------------------------------------------------------------------
let promptBusy = null;
async function drawPrompt() {
  const name = $("pp-run").value, w = +$("pp-w").value;
  $("pp-w-out").textContent = w;
  if (!name) return say("no text run in the runs folder: train one with diffkit train --text", true);
  const req = { run: name, prompt: $("pp-text").value, w, n: 12, seed: 0 };  // 12: the first draw within 1 s on 2 cores
  promptBusy = req;
  const p = await api("/api/prompt", req);
  if (promptBusy !== req) return;  // a later request wins
  drawImages($("pp-canvas"), p.samples, p.shape);
  const a = p.adherence;
  const parts = a ? ["shape", "colour", "size", "position", "all"].filter((k) => k in a).map((k) => `${k} ${(100 * a[k]).toFixed(0)}%`) : [];
  $("pp-read").textContent = `w = ${w}, ${p.tokens} tokens` + (p.truncated ? ` (cut to the encoder's ${p.max_tokens})` : "") +
    (parts.length ? `: ${parts.join("  ")}` : "");
  lab.prompt = { w, prompt: p.prompt, samples: p.samples, adherence: a };
}

// --- train ----------------------------------------------------------------------------------------
async function startTraining() {
  const objective = $("tr-objective").value;
  const body = { name: $("tr-name").value, data: $("tr-data").value, steps: +$("tr-steps").value, objective,
    prediction: $("tr-prediction").value || null, cond: $("tr-cond").checked };
  if (objective === "ddpm") body.schedule = $("tr-schedule").value;
  return startJob("/api/train", body, body.steps);
}

async function startReflow() {
  const body = { name: $("rf-name").value, teacher: $("rf-teacher").value, pairs: +$("rf-pairs").value,
    steps: +$("tr-steps").value };
  $("tr-status").textContent = `solving ${body.teacher}'s ODE for ${body.pairs} pairs...`;
  return startJob("/api/reflow", body, body.steps);
}

async function startJob(path, body, total) {
  let job;
  try { job = await api(path, body); } catch (e) { $("tr-status").textContent = e.message; $("tr-status").className = "readout error"; return; }
  $("tr-status").className = "readout";
  lab.job = { id: job.id, losses: [], total, state: "running" };
  $("tr-cancel").disabled = false;
  $("tr-go").disabled = $("rf-go").disabled = true;
  const finish = async (state, text) => {
    lab.job.state = state;
    $("tr-status").textContent = text;
    $("tr-cancel").disabled = true;
    $("tr-go").disabled = $("rf-go").disabled = false;
    await loadRuns();
  };
  followJob(job.id, {
    start: (e) => ($("tr-how").textContent = e.how.join("; ")),
    step: (e) => {
      lab.job.losses.push(e.loss);
      lab.job.step = e.step;
      $("tr-status").textContent = `step ${e.step} / ${lab.job.total}  loss ${e.loss.toFixed(4)}`;
      plotLoss($("tr-loss"), lab.job.losses, "#1f77b4");
    },
    samples: (e) => {
      if (e.points) drawPoints($("tr-samples"), e.points, Math.max(...e.points.flat().map(Math.abs)) * 1.1, "#1f77b4");
      else drawImages($("tr-samples"), e.images, e.shape);
      lab.job.samples = (lab.job.samples || 0) + 1;
    },
    done: (e) => finish("done", `done: run ${e.run} in ${e.seconds} s`),
    cancelled: () => finish("cancelled", "cancelled; nothing was kept"),
    failed: (e) => finish("failed", "failed: " + e.error),
  });
}

// a job's server-sent events (jobs.py): on[name](data) for each event; the stream closes at the last one
function followJob(id, on) {
  const es = new EventSource(`/api/jobs/${id}/events`);
  for (const name of ["start", "step", "samples", "done", "cancelled", "failed"]) {
    es.addEventListener(name, (m) => {
      if (["done", "cancelled", "failed"].includes(name)) es.close();
      if (on[name]) on[name](JSON.parse(m.data));
    });
  }
}

function plotLoss(canvas, losses, color) {
  const lo = Math.min(...losses), hi = Math.max(...losses);
  plotCurves(canvas, [{ values: losses, color }], [Math.floor(lo * 100) / 100, Math.ceil(hi * 100) / 100 || 1], undefined, "loss");
}

// --- samplers -------------------------------------------------------------------------------------
async function compareSamplers() {
  const name = $("sm-run").value;
  if (!name) return say("the sampler comparison needs a 2-D run", true);
  const rows = [];
  for (const sampler of ["ddim", "dpmpp-2m", "dpmpp-3m", "euler", "heun"]) {  // drawn as each one arrives
    $("sm-read").textContent = `computing ${sampler}...`;
    rows.push(...(await api("/api/samplers", { run: name, nfe: [5, 10, 20, 50], n: 1000, samplers: [sampler] })).rows);
    drawSamplers(rows);
    lab.samplersDrawn = rows.length;
  }
  lab.samplers = { run: name, rows };
}

function drawSamplers(rows) {
  const by = {};
  rows.forEach((r) => (by[r.sampler] = by[r.sampler] || []).push(r));
  const all = rows.map((r) => r.energy), hi = Math.max(...all);
  const series = Object.entries(by).map(([s, rs], i) => ({ values: rs.map((r) => r.energy), color: CLASS_COLORS[i] }));
  series.push({ values: by[Object.keys(by)[0]].map((r) => r.floor), color: "#000", dash: [4, 4] });
  plotCurves($("sm-canvas"), series, [Math.min(0, ...all), +hi.toFixed(3)], undefined, "energy distance vs NFE 5, 10, 20, 50");
  $("sm-read").textContent = Object.entries(by).map(([s, rs]) => `${s}: ` + rs.map((r) => `${r.nfe}->${r.energy.toFixed(4)}`).join(" ")).join(" | ");
}

// --- score ----------------------------------------------------------------------------------------
// arrows from pts[i] to pts[i] + vecs[i], in a square view of half-width `range`
function drawArrows(canvas, pts, vecs, range, color) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, s = W / (2 * range);
  clear(ctx);
  ctx.strokeStyle = color;
  ctx.fillStyle = "#555";
  for (let i = 0; i < pts.length; i++) {
    const x = W / 2 + pts[i][0] * s, y = H / 2 - pts[i][1] * s, dx = vecs[i][0] * s, dy = -vecs[i][1] * s;
    ctx.fillRect(x - 1, y - 1, 2, 2);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + dx, y + dy);
    const a = Math.atan2(dy, dx), h = Math.min(5, 0.4 * Math.hypot(dx, dy));
    ctx.lineTo(x + dx - h * Math.cos(a - 0.4), y + dy - h * Math.sin(a - 0.4));
    ctx.moveTo(x + dx, y + dy);
    ctx.lineTo(x + dx - h * Math.cos(a + 0.4), y + dy - h * Math.sin(a + 0.4));
    ctx.stroke();
  }
}

function scoreRuns() {
  options($("sf-run"), lab.runs.filter((r) => r.kind === "points").map((r) => r.name));
}

let scoreBusy = null;
async function drawScore() {
  const r = run($("sf-run").value), t = +$("sf-t").value;
  $("sf-t-out").textContent = t;
  if (!r) return;
  $("sf-t").max = r.timesteps - 1;
  const req = { run: r.name, t: Math.min(t, r.timesteps - 1), n: 300, seed: 0 };
  scoreBusy = req;
  const sf = await api("/api/score", req);
  if (scoreBusy !== req) return;  // a later slider move wins
  const range = 1.1 * Math.max(2, ...sf.points.flat().map(Math.abs));
  drawArrows($("sf-model"), sf.points, sf.model, range, "#1f77b4");
  if (sf.oracle) {
    drawArrows($("sf-oracle"), sf.points, sf.oracle, range, "#2ca02c");
    $("sf-oracle-cap").textContent = "exact (oracle)";
    const logs = sf.curve.error.map((e) => Math.log10(Math.max(e, 1e-9)));
    const lo = Math.floor(Math.min(...logs)), hi = Math.ceil(Math.max(...logs));
    const mark = sf.curve.t.reduce((best, tt, i) => (Math.abs(tt - t) < Math.abs(sf.curve.t[best] - t) ? i : best), 0);
    plotCurves($("sf-curve"), [{ values: logs, color: "#d62728" }], [lo, hi], mark, `log10 score error vs t = ${sf.curve.t[0]}..${sf.curve.t.at(-1)} (log spaced)`);
    $("sf-read").textContent = `t = ${t}: sigma ${sf.sigma.toFixed(4)}  score error E|eps_model - eps_true|^2 = ${sf.error_at_t.toExponential(3)}`;
  } else {
    clear($("sf-oracle").getContext("2d"));
    clear($("sf-curve").getContext("2d"));
    $("sf-oracle-cap").textContent = "no exact score: this run's data is not a Gaussian mixture";
    $("sf-read").textContent = `t = ${t}: sigma ${sf.sigma.toFixed(4)}`;
  }
  lab.score = sf;
}

// --- diffusion and flow ---------------------------------------------------------------------------
const FAMILY = [["pf-ddpm", (r) => r.objective === "ddpm"], ["pf-edm", (r) => r.objective === "edm"],
  ["pf-flow", (r) => r.objective === "flow" && !r.reflow], ["pf-reflow", (r) => r.reflow]];
const FAMILY_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];

function pathRuns() {
  const flat = lab.runs.filter((r) => r.kind === "points" && r.shape.length === 1 && r.shape[0] === 2);
  options($("rf-teacher"), lab.runs.filter((r) => !r.text).map((r) => r.name));
  // start on the data set with the most formulations trained
  const count = (d) => FAMILY.filter(([, fits]) => flat.some((r) => r.data === d && fits(r))).length;
  const best = [...new Set(flat.map((r) => r.data))].sort((a, b) => count(b) - count(a))[0];
  for (const [id, fits] of FAMILY) {
    const mine = flat.filter(fits);
    options($(id), ["", ...mine.map((r) => r.name)], ["(none)", ...mine.map((r) => `${r.name} (${r.data})`)]);
    const pick = mine.find((r) => r.data === best);
    $(id).value = pick ? pick.name : "";
  }
}

let pathsBusy = null;
async function drawPaths() {
  const steps = +$("pf-steps").value;
  $("pf-steps-out").textContent = steps;
  const slots = FAMILY.map(([id]) => $(id).value);
  const names = slots.filter((v) => v);
  if (!names.length) return;
  const req = { runs: names, steps, n: 300, seed: 0 };
  pathsBusy = req;
  const res = await api("/api/paths", req);
  if (pathsBusy !== req) return;  // a later slider move wins
  let k = 0;
  FAMILY.forEach(([id], i) => {
    const canvas = $(`pf-canvas-${i}`), read = $(`pf-read-${i}`);
    if (!slots[i]) { clear(canvas.getContext("2d")); read.textContent = `${$(id).parentElement.firstChild.textContent.trim()}: no run`; return; }
    const r = res.runs[k++];
    drawTrajectories(canvas, r, FAMILY_COLORS[i]);
    read.textContent = `${r.formulation} (${r.name})\nS ${r.straightness.toFixed(3)} +- ${r.straightness_se.toFixed(3)} (ODE)` +
      `\n${r.nfe} call${r.nfe === 1 ? "" : "s"}: path S ${r.path_straightness.toFixed(3)}, energy distance ${r.energy.toExponential(1)}`;
  });
  const color = (r) => FAMILY_COLORS[FAMILY.findIndex(([id]) => $(id).value === r.name)];
  const hist = res.runs.map((r) => ({ values: r.times, color: color(r) }));
  const hi = Math.max(...res.runs.flatMap((r) => r.times));
  plotCurves($("pf-times"), hist, [0, +(hi * 1.05).toFixed(3)], undefined, `training times: share per log-SNR bin, ${res.edges[0]} .. ${res.edges.at(-1)}`);
  $("pf-legend").innerHTML = res.runs.map((r) => `<span><i class="swatch" style="background:${color(r)}"></i>${r.formulation}</span>`).join("");
  lab.paths = res;
}

// trajectories from noise (light) to data (dark) in the linear path's coordinates, a fixed view of half-width 3.5
function drawTrajectories(canvas, r, color) {
  const ctx = canvas.getContext("2d"), W = canvas.width, s = W / 7;
  drawPoints(canvas, r.ends, 3.5, "rgba(0,0,0,0.35)", 2);
  ctx.strokeStyle = color;
  ctx.globalAlpha = 0.7;
  for (let p = 0; p < r.paths[0].length; p++) {
    ctx.beginPath();
    r.paths.forEach((frame, j) => {
      const [x, y] = frame[p];
      j ? ctx.lineTo(W / 2 + x * s, W / 2 - y * s) : ctx.moveTo(W / 2 + x * s, W / 2 - y * s);
    });
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
}

// --- few steps: a distilled student beside its teacher ------------------------------------------------------
let fewBusy = null;
async function drawFewSteps() {
  const name = $("fs-run").value, nfe = +$("fs-nfe").value;
  $("fs-nfe-out").textContent = nfe;
  if (!name) return;
  const req = { run: name, nfe, n: run(name).kind === "points" ? 1000 : 16, seed: 0 };
  fewBusy = req;
  const res = await api("/api/fewsteps", req);
  if (fewBusy !== req) return;  // a later slider move wins
  for (const role of ["teacher", "student"]) {
    const r = res[role], canvas = $(`fs-${role}`);
    if (res.kind === "points") drawPoints(canvas, r.samples, 3, role === "teacher" ? "#1f77b4" : "#d62728", 2);
    else drawImages(canvas, r.samples, res.shape);
    const per = r.calls === 1 ? "call" : "calls";
    $(`fs-${role}-cap`).textContent = `${role}: ${r.sampler} ${r.steps} step${r.steps === 1 ? "" : "s"}, ` +
      `${+r.calls.toFixed(2)} network ${per} per sample, ${(1000 * r.seconds).toFixed(0)} ms` +
      (r.energy === undefined ? "" : `\nenergy distance to the data ${r.energy.toExponential(1)}`);
  }
  lab.fewsteps = res;
}

// --- edit: inpainting under a painted mask, img2img at a strength ------------------------------------------
function editShape() {
  const r = run($("ed-run").value);
  return r ? r.shape : null;
}

function presetMask(kind, H, W) {
  const m = new Array(H * W).fill(0);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const on = { bottom: y >= H / 2, top: y < H / 2, left: x < W / 2,
      centre: Math.abs(y - (H - 1) / 2) < H / 4 && Math.abs(x - (W - 1) / 2) < W / 4 }[kind];
    m[y * W + x] = on ? 1 : 0;
  }
  return m;
}

function drawEditInput() {
  const e = lab.edit, canvas = $("ed-input"), ctx = canvas.getContext("2d");
  if (!e || !e.input) return;
  const [C, H, W] = e.shape, s = canvas.width / W;
  clear(ctx);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const k = y * W + x, px = [0, 1, 2].map((c) => e.input[(C === 3 ? c : 0) * H * W + k]);
    const m = e.mask[k] ? 0.55 : 0;  // the regenerated region: the input under white
    ctx.fillStyle = `rgb(${px.map((v) => Math.round(v * (1 - m) + 255 * m)).join(",")})`;
    ctx.fillRect(x * s, y * s, s, s);
  }
}

function paintAt(ev) {
  const e = lab.edit, canvas = $("ed-input");
  if (!e || !e.shape) return;
  const [, H, W] = e.shape, box = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - box.left) / box.width) * W), y = Math.floor(((ev.clientY - box.top) / box.height) * H);
  if (x < 0 || y < 0 || x >= W || y >= H) return;
  e.mask[y * W + x] = 1;
  $("ed-preset").value = "painted";
  drawEditInput();
}

let editBusy = null;
async function loadEditImage() {
  const name = $("ed-run").value, shape = editShape();
  if (!shape) return;
  const req = { run: name, index: +$("ed-index").value, strength: 0 };
  editBusy = req;
  lab.editPending = true;
  const res = await api("/api/edit", req).finally(() => editBusy === req && (lab.editPending = false));
  if (editBusy !== req) return;  // a later choice wins
  const [, H, W] = shape, preset = $("ed-preset").value;
  const keep = lab.edit && lab.edit.mask && preset === "painted" && lab.edit.mask.length === H * W;
  lab.edit = { ...res, run: name, mask: keep ? lab.edit.mask : presetMask(preset === "painted" ? "none" : preset, H, W),
    result: null };
  drawEditInput();
}

async function runEdit() {
  const e = lab.edit, name = $("ed-run").value, r = run(name);
  if (!e) return;
  const preset = $("ed-preset").value, masked = preset !== "none";
  const req = { run: name, index: e.index, mask: masked ? e.mask : null, seed: 0, w: 3 };
  if (!masked) req.strength = +$("ed-strength").value;
  if (r.text) req.prompt = $("ed-prompt").value;
  else if (r.cond) req.cls = +$("ed-class").value;
  const res = await api("/api/edit", req);
  drawImages($("ed-result"), [res.result], res.shape);
  $("ed-read").textContent = masked
    ? `inpainted; the kept pixels changed by at most ${(255 * res.kept_change).toFixed(2)} / 255`
    : `img2img at strength ${res.strength}`;
  lab.edit = { ...e, result: res.result, kept_change: res.kept_change, strength: res.strength };
}

function editRuns() {
  const images = lab.runs.filter((r) => r.kind === "images" && !r.distilled && ["digits", "mnist5k", "shapes"].includes(r.data));
  options($("ed-run"), images.map((r) => r.name));
  editTarget();
}

function editTarget() {
  const r = run($("ed-run").value);
  $("ed-prompt-label").hidden = !(r && r.text);
  $("ed-class-label").hidden = !(r && r.cond);
  const chosen = $("ed-class").value;  // kept when another image of the same run is picked
  if (r && r.cond) options($("ed-class"), r.classes.map((_, i) => i), r.classes.map(String));
  if ([...$("ed-class").options].some((o) => o.value === chosen)) $("ed-class").value = chosen;
}

// --- start ----------------------------------------------------------------------------------------
async function main() {
  startJourney();  // journey.js: the navigation, one section per screen, the quick checks
  startNoise();    // noise.js: drawn in the browser, no server call
  startPlayground();  // playground.js: its model is trained on first use
  startDraw();        // draw.js: brushed points, uploaded and trained on
  const [ds, schedules] = await Promise.all([api("/api/datasets"), api("/api/schedules?T=1000")]);
  options($("fw-data"), [...ds.points, ...ds.images]);
  options($("tr-data"), [...ds.points, ...ds.images]);
  for (const id of ["fw-sched-a", "fw-sched-b", "tr-schedule"]) options($(id), ds.schedules);
  $("fw-sched-b").value = "cosine";
  lab.schedules = schedules;
  await Promise.all([loadForward(), loadRuns()]);
  $("fw-t").addEventListener("input", drawForward);
  for (const id of ["fw-sched-a", "fw-sched-b"]) $(id).addEventListener("change", drawForward);
  $("fw-data").addEventListener("change", loadForward);
  $("rv-go").addEventListener("click", () => sampleReverse().catch((e) => say(e.message, true)));
  $("rv-play").addEventListener("click", playReverse);
  $("rv-pause").addEventListener("click", () => clearInterval(lab.reverse.timer));
  $("rv-step").addEventListener("click", () => { lab.reverse.frame = Math.min(lab.reverse.frame + 1, lab.reverse.frames.length - 1); drawReverse(); });
  $("rv-x0").addEventListener("change", () => lab.reverse && drawReverse());
  $("gd-run").addEventListener("change", () => { guidanceClasses(); drawGuidance().catch((e) => say(e.message, true)); });
  for (const id of ["gd-w", "gd-class"]) $(id).addEventListener("change", () => drawGuidance().catch((e) => say(e.message, true)));
  $("gd-w").addEventListener("input", () => ($("gd-w-out").textContent = $("gd-w").value));
  $("pp-go").addEventListener("click", () => drawPrompt().catch((e) => say(e.message, true)));
  $("pp-w").addEventListener("change", () => drawPrompt().catch((e) => say(e.message, true)));
  $("pp-w").addEventListener("input", () => ($("pp-w-out").textContent = $("pp-w").value));
  $("pp-text").addEventListener("keydown", (e) => e.key === "Enter" && drawPrompt().catch((err) => say(err.message, true)));
  $("tr-go").addEventListener("click", startTraining);
  $("tr-objective").addEventListener("change", () => ($("tr-schedule").disabled = $("tr-objective").value !== "ddpm"));
  $("rf-go").addEventListener("click", startReflow);
  for (const [id] of FAMILY) $(id).addEventListener("change", () => drawPaths().catch((e) => say(e.message, true)));
  $("pf-steps").addEventListener("input", () => ($("pf-steps-out").textContent = $("pf-steps").value));
  $("pf-steps").addEventListener("change", () => drawPaths().catch((e) => say(e.message, true)));
  $("tr-cancel").addEventListener("click", () => lab.job && api(`/api/jobs/${lab.job.id}/cancel`, {}));
  $("sm-go").addEventListener("click", () => compareSamplers().catch((e) => say(e.message, true)));
  $("sf-run").addEventListener("change", () => drawScore().catch((e) => say(e.message, true)));
  $("sf-t").addEventListener("input", () => ($("sf-t-out").textContent = $("sf-t").value));
  $("sf-t").addEventListener("change", () => drawScore().catch((e) => say(e.message, true)));
  $("fs-run").addEventListener("change", () => drawFewSteps().catch((e) => say(e.message, true)));
  $("fs-nfe").addEventListener("input", () => ($("fs-nfe-out").textContent = $("fs-nfe").value));
  $("fs-nfe").addEventListener("change", () => drawFewSteps().catch((e) => say(e.message, true)));
  const editLoad = () => { editTarget(); loadEditImage().catch((e) => say(e.message, true)); };
  for (const id of ["ed-run", "ed-index", "ed-preset"]) $(id).addEventListener("change", editLoad);
  $("ed-clear").addEventListener("click", () => { if (lab.edit) { lab.edit.mask.fill(0); $("ed-preset").value = "painted"; drawEditInput(); } });
  $("ed-strength").addEventListener("input", () => ($("ed-strength-out").textContent = $("ed-strength").value));
  $("ed-go").addEventListener("click", () => runEdit().catch((e) => say(e.message, true)));
  let painting = false;
  $("ed-input").addEventListener("mousedown", (ev) => { painting = true; paintAt(ev); });
  $("ed-input").addEventListener("mousemove", (ev) => painting && paintAt(ev));
  window.addEventListener("mouseup", () => (painting = false));
  // the panels that run a model draw when their section is first shown, so a page load computes only what is seen
  const firstDraw = {
    fewsteps: () => $("fs-run").value && drawFewSteps(),
    edit: () => $("ed-run").value && loadEditImage(),
    guidance: () => $("gd-run").value && drawGuidance(),
    score: () => $("sf-run").value && drawScore(),
    paths: () => FAMILY.some(([id]) => $(id).value) && drawPaths(),
    prompt: () => $("pp-run").value && drawPrompt(),
  };
  const drawn = new Set();
  const drawSection = (id) => {
    if (drawn.has(id) || !firstDraw[id]) return;
    drawn.add(id);
    Promise.resolve(firstDraw[id]()).catch((e) => say(e.message, true));
  };
  document.addEventListener("lab:section", (e) => drawSection(e.detail));
  drawSection(lab.section);
  // after the first frame: load the text run in the background, so the prompt panel's first draw need not wait
  if ($("pp-run").value && lab.section !== "prompt") api("/api/warm", { run: $("pp-run").value }).catch(() => {});
  lab.ready = true;
}

main().catch((e) => say(e.message, true));
