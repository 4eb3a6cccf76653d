// The journey: the navigation, one section per screen (the address's #hash names it), the lesson mode's
// previous / next, and the quick checks with their scores (kept in this browser's localStorage).
"use strict";

const QUIZ_KEY = "diffkit-lab-quiz";
const SECTIONS = ["start", ...LESSONS.map((l) => l.id), ...TOOLS.map((t) => t.id)];

function quizAnswers() {
  try { return JSON.parse(localStorage.getItem(QUIZ_KEY)) || {}; } catch { return {}; }
}

// the first answer to each question counts: {right, answered, total} for one lesson, or for all with no id
function quizScore(id) {
  const answers = quizAnswers(), lessons = id ? LESSONS.filter((l) => l.id === id) : LESSONS;
  let right = 0, answered = 0, total = 0;
  for (const l of lessons) l.checks.forEach((_, i) => {
    total += 1;
    const a = answers[`${l.id}:${i}`];
    if (a) { answered += 1; right += a.right ? 1 : 0; }
  });
  return { right, answered, total };
}

function answer(lesson, qi, ci, box) {
  const answers = quizAnswers(), key = `${lesson.id}:${qi}`, q = lesson.checks[qi], right = ci === q.right;
  if (!answers[key]) {
    answers[key] = { choice: ci, right };
    localStorage.setItem(QUIZ_KEY, JSON.stringify(answers));
  }
  box.querySelectorAll("button").forEach((b, j) => {
    b.setAttribute("aria-pressed", String(j === ci));
    b.classList.toggle("chosen-right", j === ci && right);
    b.classList.toggle("chosen-wrong", j === ci && !right);
  });
  const why = box.querySelector(".why");
  why.textContent = (right ? "" : "Not quite. ") + q.choices[ci][1];
  why.className = "why " + (right ? "right" : "wrong");
  showScores();
}

function renderCheck(lesson) {
  const section = document.getElementById(lesson.id);
  const check = document.createElement("div");
  check.className = "check";
  check.id = `qc-${lesson.id}`;
  check.innerHTML = `<h3>Quick check <span class="qc-score"></span></h3>`;
  lesson.checks.forEach((q, qi) => {
    const box = document.createElement("fieldset");
    box.className = "question";
    box.innerHTML = `<legend>${qi + 1}. ${q.q}</legend>`;
    q.choices.forEach(([text], ci) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = text;
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", () => answer(lesson, qi, ci, box));
      box.appendChild(b);
    });
    const why = document.createElement("p");
    why.className = "why";
    why.setAttribute("aria-live", "polite");
    box.appendChild(why);
    check.appendChild(box);
  });
  section.appendChild(check);
}

function renderSteps(id) {
  const at = SECTIONS.indexOf(id), steps = document.createElement("nav");
  steps.className = "steps";
  steps.setAttribute("aria-label", "previous and next section");
  const link = (to, text, cls) => `<a class="${cls}" href="#${to}">${text}</a>`;
  const title = (s) => (LESSONS.find((l) => l.id === s) || TOOLS.find((t) => t.id === s) || { title: "the start" }).title;
  const lessonAt = LESSONS.findIndex((l) => l.id === id);
  steps.innerHTML = (at > 0 ? link(SECTIONS[at - 1], `&larr; ${title(SECTIONS[at - 1])}`, "prev") : "") +
    (lessonAt >= 0 ? `<span class="where">section ${lessonAt + 1} of ${LESSONS.length}</span>` : "") +
    (at + 1 < SECTIONS.length ? link(SECTIONS[at + 1], `${title(SECTIONS[at + 1])} &rarr;`, "next") : "");
  document.getElementById(id).appendChild(steps);
}

function renderNav() {
  const item = (s, i) => `<li><a href="#${s.id}" data-section="${s.id}">${i === undefined ? "" : `<span class="num">${i + 1}</span>`}` +
    `${s.title}</a>${i === undefined ? "" : ` <span class="badge" data-badge="${s.id}"></span>`}</li>`;
  document.getElementById("nav-lessons").innerHTML = LESSONS.map(item).join("");
  document.getElementById("nav-tools").innerHTML = TOOLS.map((t) => item(t)).join("");
}

function showScores() {
  for (const l of LESSONS) {
    const s = quizScore(l.id), text = s.answered ? `${s.right}/${s.total}` : "";
    document.querySelector(`#qc-${l.id} .qc-score`).textContent = s.answered ? `(${s.right}/${s.total} right)` : "";
    document.querySelector(`[data-badge="${l.id}"]`).textContent = text;
  }
  const all = quizScore();
  document.getElementById("nav-score").textContent = all.answered ? `quick checks: ${all.right}/${all.total}` : "";
  document.querySelector("#score-table tbody").innerHTML = LESSONS.map((l) => {
    const s = quizScore(l.id);
    return `<tr><td><a href="#${l.id}">${l.title}</a></td><td>${s.answered ? `${s.right}/${s.total}` : "-"}</td></tr>`;
  }).join("") + `<tr class="total"><td>all</td><td>${all.right}/${all.total}</td></tr>`;
}

// show one section (the others hidden); panels that draw on demand listen for "lab:section"
function showSection(id) {
  if (!SECTIONS.includes(id)) id = "start";
  for (const s of SECTIONS) document.getElementById(s).hidden = s !== id;
  document.querySelectorAll("#nav a[data-section]").forEach((a) => {
    if (a.dataset.section === id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  window.lab.section = id;
  document.dispatchEvent(new CustomEvent("lab:section", { detail: id }));
}

function startJourney() {
  renderNav();
  LESSONS.forEach(renderCheck);
  SECTIONS.forEach(renderSteps);
  showScores();
  document.getElementById("journey-go").addEventListener("click", () => { location.hash = LESSONS[0].id; });
  document.getElementById("journey-reset").addEventListener("click", () => {
    localStorage.removeItem(QUIZ_KEY);
    document.querySelectorAll(".question button").forEach((b) => { b.className = ""; b.setAttribute("aria-pressed", "false"); });
    document.querySelectorAll(".question .why").forEach((w) => { w.textContent = ""; w.className = "why"; });
    showScores();
  });
  window.addEventListener("hashchange", () => { showSection(location.hash.slice(1)); window.scrollTo(0, 0); });
  showSection(location.hash.slice(1));
}
