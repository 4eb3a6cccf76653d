// Draw your data: brush points with the mouse, upload them (POST /api/data), train on them with the job runner
// and watch the samples appear over them and the loss fall.
"use strict";

const DRAW_RANGE = 4;  // the canvas shows [-4, 4] on both axes
const dr = { points: [], samples: null, losses: [] };

function drRedraw() {
  const canvas = $("dr-canvas");
  drawPoints(canvas, dr.points, DRAW_RANGE, "#1f4e8c", 2);
  if (dr.samples) {
    const ctx = canvas.getContext("2d"), s = canvas.width / (2 * DRAW_RANGE);
    ctx.fillStyle = "#c0392b";
    for (const [x, y] of dr.samples) ctx.fillRect(canvas.width / 2 + x * s - 1.5, canvas.height / 2 - y * s - 1.5, 3, 3);
  }
  $("dr-read").textContent = `${dr.points.length} points` + (dr.points.length < 50 ? " (draw at least 50)" : "");
  lab.draw = { n: dr.points.length, samples: dr.samples ? dr.samples.length : 0, losses: dr.losses.length, state: dr.state };
}

function drSpray(ev) {
  const canvas = $("dr-canvas"), box = canvas.getBoundingClientRect(), brush = +$("dr-brush").value;
  const x = ((ev.clientX - box.left) / box.width * 2 - 1) * DRAW_RANGE, y = -((ev.clientY - box.top) / box.height * 2 - 1) * DRAW_RANGE;
  for (let k = 0; k < 6 && dr.points.length < 5000; k++) dr.points.push([x + brush * gaussian(), y + brush * gaussian()]);
  drRedraw();
}

function drExample() {  // a face: two eyes and a smile, 1,200 points
  dr.points = [];
  for (let i = 0; i < 1200; i++) {
    const part = i % 4;
    if (part < 2) dr.points.push([(part ? 1.2 : -1.2) + 0.2 * gaussian(), 1.2 + 0.2 * gaussian()]);
    else { const a = Math.PI * (1.15 + 0.7 * Math.random()); dr.points.push([2 * Math.cos(a) + 0.1 * gaussian(), 2 * Math.sin(a) + 0.4 + 0.1 * gaussian()]); }
  }
  dr.samples = null;
  drRedraw();
}

async function drTrain() {
  if (dr.points.length < 50) throw new Error("draw at least 50 points first");
  const up = await api("/api/data", { points: dr.points.map(([x, y]) => [+x.toFixed(4), +y.toFixed(4)]) });
  const steps = +$("dr-steps").value;
  const job = await api("/api/train", { name: $("dr-name").value, data: up.data, steps });
  dr.losses = [];
  dr.state = "running";
  $("dr-go").disabled = true;
  const end = (state, text) => { dr.state = state; $("dr-go").disabled = false; drRedraw(); $("dr-read").textContent = text; lab.draw.sha256 = up.sha256; };
  followJob(job.id, {
    step: (e) => {
      dr.losses.push(e.loss);
      plotLoss($("dr-loss"), dr.losses, "#1f4e8c");
      $("dr-read").textContent = `uploaded ${up.n} points (sha256 ${up.sha256.slice(0, 12)}...); step ${e.step} / ${steps}, loss ${e.loss.toFixed(4)}`;
      lab.draw.losses = dr.losses.length;
    },
    samples: (e) => { dr.samples = e.points; drRedraw(); },
    done: (e) => end("done", `done: run ${e.run}, trained on your ${up.n} points in ${e.seconds} s`),
    failed: (e) => end("failed", "failed: " + e.error),
    cancelled: () => end("cancelled", "cancelled"),
  });
}

function startDraw() {
  let painting = false;
  $("dr-canvas").addEventListener("mousedown", (ev) => { painting = true; dr.samples = null; drSpray(ev); });
  $("dr-canvas").addEventListener("mousemove", (ev) => painting && drSpray(ev));
  window.addEventListener("mouseup", () => (painting = false));
  $("dr-brush").addEventListener("input", () => ($("dr-brush-out").textContent = $("dr-brush").value));
  $("dr-clear").addEventListener("click", () => { dr.points = []; dr.samples = null; drRedraw(); });
  $("dr-example").addEventListener("click", drExample);
  $("dr-go").addEventListener("click", () => drTrain().catch((e) => { $("dr-read").textContent = e.message; $("dr-go").disabled = false; }));
  drRedraw();
}
