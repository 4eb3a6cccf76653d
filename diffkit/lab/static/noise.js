// The noise section: Gaussian noise drawn in the browser (Box-Muller from uniform numbers): a 2-D cloud, one
// coordinate's histogram against the N(0, 1) density, and a 28x28 noise image.
"use strict";

function gaussian() {
  const u = 1 - Math.random(), v = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function drawNoise() {
  const n = +document.getElementById("nz-n").value;
  document.getElementById("nz-n-out").textContent = n;
  const pts = Array.from({ length: n }, () => [gaussian(), gaussian()]);
  drawPoints(document.getElementById("nz-points"), pts, 4, "#1f4e8c", 2);
  const inside = pts.filter(([x, y]) => x * x + y * y < 1).length, far = pts.filter(([x, y]) => x * x + y * y > 9).length;
  document.getElementById("nz-read").textContent =
    `${n} points: ${(100 * inside / n).toFixed(1)}% within 1 of the origin (exact 39.3%), ${(100 * far / n).toFixed(1)}% beyond 3 (1.1%)`;
  // histogram of x against the density
  const canvas = document.getElementById("nz-hist"), ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  clear(ctx);
  const bins = 30, lo = -4, hi = 4, counts = new Array(bins).fill(0), width = (hi - lo) / bins;
  for (const [x] of pts) if (x >= lo && x < hi) counts[Math.floor((x - lo) / width)] += 1;
  const peak = 0.45, X = (v) => ((v - lo) / (hi - lo)) * W, Y = (d) => H - 12 - (H - 24) * d / peak;
  ctx.fillStyle = "#9db8dd";
  counts.forEach((c, i) => {
    const d = c / (n * width);
    ctx.fillRect(X(lo + i * width) + 1, Y(d), X(lo + width) - X(lo) - 2, H - 12 - Y(d));
  });
  ctx.strokeStyle = "#b3261e";
  ctx.beginPath();
  for (let k = 0; k <= 200; k++) {
    const v = lo + (hi - lo) * k / 200, d = Math.exp(-v * v / 2) / Math.sqrt(2 * Math.PI);
    k ? ctx.lineTo(X(v), Y(d)) : ctx.moveTo(X(v), Y(d));
  }
  ctx.stroke();
  const image = Array.from({ length: 28 * 28 }, () => Math.max(0, Math.min(255, Math.round(127.5 + 127.5 * gaussian() / 2))));
  drawImages(document.getElementById("nz-image"), [image], [1, 28, 28]);
  window.lab.noise = { n, inside: inside / n };
}

function startNoise() {
  document.getElementById("nz-go").addEventListener("click", drawNoise);
  document.getElementById("nz-n").addEventListener("input", drawNoise);
  drawNoise();
}
