// The playground: train its model on first use (a job, followed like the Train panel's), then destroy a pattern
// with the forward process and rebuild it with the model; a timeline plays the frames either way at any speed.
"use strict";

const PG_SIDE = 16;
const pg = { drawn: new Array(PG_SIDE * PG_SIDE).fill(0), frames: [], labels: [], frame: 0, timer: null };

function pgDrawCells(canvas, cells) {
  drawImages(canvas, [cells.map((v) => Math.round(255 * v))], [1, PG_SIDE, PG_SIDE]);
}

async function pgStatus() {
  const s = await api("/api/playground");
  lab.playground = { ...(lab.playground || {}), ready: s.ready };
  $("pg-go").disabled = !s.ready;
  $("pg-train").hidden = s.ready || s.job !== null;
  $("pg-progress").hidden = s.ready;
  if (s.ready) $("pg-train-read").textContent = `model ready: runs/${s.run}`;
  else if (s.job) pgFollow(s.job.id, s.recipe.steps);
  else $("pg-train-read").textContent = `not trained yet: ${s.recipe.steps} steps on the patterns set`;
  return s;
}

async function pgTrain() {
  const s = await api("/api/playground/prepare", {});
  $("pg-train").hidden = true;
  if (s.job) pgFollow(s.job.id, s.recipe.steps);
}

function pgFollow(id, total) {
  if (pg.following === id) return;
  pg.following = id;
  const t0 = performance.now();
  const end = (text) => { pg.following = null; $("pg-train-read").textContent = text; pgStatus(); };
  followJob(id, {
    step: (e) => {
      const secs = (performance.now() - t0) / 1000, left = secs / e.step * (total - e.step);
      $("pg-progress").value = e.step / total;
      $("pg-train-read").textContent = `training: step ${e.step} / ${total}, loss ${e.loss.toFixed(3)}, about ${Math.ceil(left)} s left`;
      $("pg-estimate").textContent = `about ${Math.round(secs / e.step * total)} s`;
    },
    done: (e) => end(`trained in ${e.seconds} s`),
    failed: (e) => end("training failed: " + e.error),
    cancelled: () => end("training was cancelled"),
  });
}

async function pgRebuild() {
  const pattern = $("pg-pattern").value;
  const req = { pattern, strength: +$("pg-strength").value, seed: +$("pg-seed").value, steps: 25 };
  if (pattern === "drawn") req.pixels = pg.drawn;
  $("pg-read").textContent = "rebuilding...";
  const r = await api("/api/playground/rebuild", req);
  pgStop();
  pg.result = r;
  pg.frames = [...r.forward, ...r.reverse];
  pg.labels = [...r.forward_alpha_bar.map((a, i) => `forward ${i} / ${r.forward.length - 1}: alpha_bar ${a.toFixed(3)}`),
    ...r.reverse_alpha_bar.map((a, i) => `rebuild ${i + 1} / ${r.reverse.length}: alpha_bar ${a.toFixed(3)}`)];
  $("pg-time").max = pg.frames.length - 1;
  pg.frame = 0;
  if (pattern !== "drawn") drawImages($("pg-draw"), [r.input], r.shape);
  drawImages($("pg-result"), [r.result], r.shape);
  $("pg-read").textContent = `strength ${r.strength}: the judge reads the input as ${r.input_reads} and the rebuilt ` +
    `pattern as ${r.result_reads}; mean change ${(100 * r.change).toFixed(1)}% of the range`;
  for (const id of ["pg-play", "pg-pause"]) $(id).disabled = false;
  pgShow(0);
  lab.playground = { ...lab.playground, result: r, frames: pg.frames.length };
}

function pgShow(k) {
  pg.frame = Math.max(0, Math.min(pg.frames.length - 1, k));
  $("pg-time").value = pg.frame;
  drawImages($("pg-view"), [pg.frames[pg.frame]], [1, PG_SIDE, PG_SIDE]);
  $("pg-frame").textContent = pg.labels[pg.frame];
  lab.playground.frame = pg.frame;
}

function pgPlay() {
  pgStop();
  const dir = +$("pg-direction").value;
  if ((dir > 0 && pg.frame >= pg.frames.length - 1) || (dir < 0 && pg.frame <= 0)) pgShow(dir > 0 ? 0 : pg.frames.length - 1);
  pg.timer = setInterval(() => {
    const next = pg.frame + dir;
    if (next < 0 || next >= pg.frames.length) { pgStop(); lab.playground.played = true; return; }
    pgShow(next);
  }, 1000 / +$("pg-speed").value);
}

function pgStop() {
  clearInterval(pg.timer);
  pg.timer = null;
}

function pgPaint(ev) {
  const box = $("pg-draw").getBoundingClientRect();
  const x = Math.floor(((ev.clientX - box.left) / box.width) * PG_SIDE), y = Math.floor(((ev.clientY - box.top) / box.height) * PG_SIDE);
  if (x < 0 || y < 0 || x >= PG_SIDE || y >= PG_SIDE) return;
  pg.drawn[y * PG_SIDE + x] = ev.shiftKey ? 0 : 1;
  $("pg-pattern").value = "drawn";
  pgDrawCells($("pg-draw"), pg.drawn);
}

function startPlayground() {
  const fail = (e) => say(e.message, true);
  $("pg-train").addEventListener("click", () => pgTrain().catch(fail));
  $("pg-go").addEventListener("click", () => pgRebuild().catch(fail));
  $("pg-play").addEventListener("click", pgPlay);
  $("pg-pause").addEventListener("click", pgStop);
  $("pg-time").addEventListener("input", () => { pgStop(); pgShow(+$("pg-time").value); });
  $("pg-strength").addEventListener("input", () => ($("pg-strength-out").textContent = $("pg-strength").value));
  $("pg-speed").addEventListener("input", () => { $("pg-speed-out").textContent = $("pg-speed").value; if (pg.timer) pgPlay(); });
  $("pg-clear").addEventListener("click", () => { pg.drawn.fill(0); pgDrawCells($("pg-draw"), pg.drawn); });
  $("pg-pattern").addEventListener("change", () => $("pg-pattern").value === "drawn" && pgDrawCells($("pg-draw"), pg.drawn));
  let painting = false;
  $("pg-draw").addEventListener("mousedown", (ev) => { painting = true; pgPaint(ev); });
  $("pg-draw").addEventListener("mousemove", (ev) => painting && pgPaint(ev));
  window.addEventListener("mouseup", () => (painting = false));
  pgDrawCells($("pg-draw"), pg.drawn);
  lab.playground = { ready: false };
  document.addEventListener("lab:section", (e) => e.detail === "playground" && pgStatus().catch(fail));
  if (lab.section === "playground") pgStatus().catch(fail);
}
