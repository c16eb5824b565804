// The digit service's page: draw or upload digits, read the answers, follow jobs.
"use strict";

const $ = (id) => document.getElementById(id);

// Drawing pads: black strokes on white, with a pen that scales with the canvas.
function drawingPad(canvas, penWidth) {
  const context = canvas.getContext("2d");
  let drawing = false;
  let last = null;
  const clear = () => {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    canvas.dataset.empty = "true";
  };
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (canvas.width / box.width),
            (event.clientY - box.top) * (canvas.height / box.height)];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    last = point(event);
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    context.strokeStyle = "#000";
    context.lineWidth = penWidth;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(...last);
    context.lineTo(...next);
    context.stroke();
    last = next;
    canvas.dataset.empty = "false";
  });
  for (const name of ["pointerup", "pointercancel", "pointerleave"]) {
    canvas.addEventListener(name, () => { drawing = false; });
  }
  clear();
  return { clear, blob: () => new Promise((resolve) => canvas.toBlob(resolve, "image/png")) };
}

// The API token, if the service has one (API_TOKEN): kept in this browser only.
const TOKEN_KEY = "digit-service-token";
$("token").value = localStorage.getItem(TOKEN_KEY) || "";
$("token").addEventListener("change", () => localStorage.setItem(TOKEN_KEY, $("token").value.trim()));

function api(url, options = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return fetch(url, { ...options, headers: { ...headers, ...(options.headers || {}) } });
}

async function post(url, form) {
  const response = await api(url, { method: "POST", body: form });
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  return body;
}

function showError(element, error) {
  element.textContent = error ? String(error.message || error) : "";
  element.hidden = !error;
}

const png = (base64) => `data:image/png;base64,${base64}`;

// Which models answer: the page's own ?model= (a digit model) and ?calculator= (id or alias),
// else the service's defaults. A link can carry them.
const chosen = new URLSearchParams(location.search);
const modelQuery = (name) => (chosen.get(name) ? `&model=${encodeURIComponent(chosen.get(name))}` : "");

// One digit.
const digitPad = drawingPad($("digit-canvas"), 18);

async function readDigit(file, name) {
  const form = new FormData();
  form.append("file", file, name);
  showError($("digit-error"), null);
  try {
    const answer = await post(`/predict/digit?debug=true${modelQuery("model")}`, form);
    $("digit-answer").textContent = answer.digit;
    $("digit-confidence").textContent = `${(answer.confidence * 100).toFixed(1)}% sure`;
    $("digit-seen").src = png(answer.image);
    $("digit-bars").replaceChildren(...answer.probabilities.map((p, digit) => {
      const row = document.createElement("li");
      row.className = digit === answer.digit ? "best" : "";
      row.innerHTML = `<span>${digit}</span><span class="bar" style="width:${(p * 100).toFixed(1)}%"></span>` +
        `<span>${(p * 100).toFixed(1)}%</span>`;
      return row;
    }));
    $("digit-model").textContent = `model ${answer.model.kind} ${answer.model.id}`;
    $("digit-result").hidden = false;
  } catch (error) {
    $("digit-result").hidden = true;
    showError($("digit-error"), error);
  }
}

$("digit-read").addEventListener("click", async () => readDigit(await digitPad.blob(), "drawing.png"));
$("digit-clear").addEventListener("click", () => { digitPad.clear(); $("digit-result").hidden = true; });
$("digit-file").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) readDigit(file, file.name);
  event.target.value = "";
});

// Ten digits.
const sumPad = drawingPad($("sum-canvas"), 9);

async function readSum(files, field) {
  const form = new FormData();
  for (const [file, name] of files) form.append(field, file, name);
  showError($("sum-error"), null);
  try {
    const method = $("sum-method").value;
    const model = modelQuery(method === "digit-model" ? "model" : "calculator");
    const answer = await post(`/predict/sum?debug=true&method=${method}${model}`, form);
    $("sum-answer").textContent = answer.sum;
    $("sum-doubt").hidden = !answer.uncertain;
    const cells = (row, values, make) => $(row).replaceChildren($(row).firstElementChild,
      ...values.map((value) => { const cell = document.createElement("td"); make(cell, value); return cell; }));
    cells("sum-digits", answer.digits, (cell, value) => { cell.textContent = value; });
    cells("sum-running", answer.cumulative, (cell, value) => { cell.textContent = value; });
    cells("sum-confidence", answer.confidences || [], (cell, value) => { cell.textContent = `${Math.round(100 * value)}%`; });
    cells("sum-images", answer.images || [], (cell, value) => {
      const image = document.createElement("img"); image.src = png(value); image.alt = "digit seen"; cell.append(image);
    });
    const header = document.querySelector("#sum-result thead tr");
    header.replaceChildren(header.firstElementChild, ...answer.digits.map((_, i) => {
      const cell = document.createElement("th"); cell.textContent = i + 1; return cell;
    }));
    $("sum-model").textContent = `${answer.method}, model ${answer.model.kind} ${answer.model.id}`;
    $("sum-result").hidden = false;
  } catch (error) {
    $("sum-result").hidden = true;
    showError($("sum-error"), error);
  }
}

$("sum-read").addEventListener("click", async () => readSum([[await sumPad.blob(), "row.png"]], "file"));
$("sum-clear").addEventListener("click", () => { sumPad.clear(); $("sum-result").hidden = true; });
$("sum-row-file").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) readSum([[file, file.name]], "file");
  event.target.value = "";
});
$("sum-files").addEventListener("change", (event) => {
  const files = [...event.target.files].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  readSum(files.map((file) => [file, file.name]), "files");
  event.target.value = "";
});

// Jobs and presets.
const PLOTS = { mlp: ["history", "gradients", "confusion"], cnn: ["history", "gradients", "confusion"],
  svhn_cnn: ["history", "gradients", "confusion"], calculator: ["history", "gradients"], backprop: ["graph"] };

function progressOf(job) {
  const p = job.progress || {};
  if (p.epochs) {
    const done = (p.epoch - 1 + (p.batches ? (p.batch || 0) / p.batches : 1)) / p.epochs;
    return [done, `epoch ${p.epoch} of ${p.epochs}`];
  }
  if (p.steps) return [p.step / p.steps, `step ${p.step} of ${p.steps}`];
  return [job.status === "succeeded" ? 1 : 0, ""];
}

async function refreshJobs() {
  try {
    const page = await (await api("/jobs?limit=15")).json();
    $("jobs-table").tBodies[0].replaceChildren(...page.items.map((job) => {
      const row = document.createElement("tr");
      row.dataset.job = job.id;
      const [fraction, text] = progressOf(job);
      const plots = job.status === "succeeded" || job.status === "running"
        ? (PLOTS[job.kind] || []).map((plot) => `<a href="/jobs/${job.id}/plots/${plot}.png" data-plot>${plot}</a>`).join(" ")
        : "";
      row.innerHTML = `<td title="${job.id}">${job.id.slice(0, 8)}</td><td>${job.kind}</td>` +
        `<td class="status-${job.status}">${job.status}</td>` +
        `<td><span class="progress"><span style="width:${Math.round(Math.min(fraction, 1) * 100)}%"></span></span> ` +
        `<span class="progress-text">${text}</span></td><td>${plots}</td>`;
      return row;
    }));
  } catch (error) {
    // The next refresh tries again; the table keeps what it showed.
  }
}

$("jobs-table").addEventListener("click", (event) => {
  const link = event.target.closest("a[data-plot]");
  if (!link) return;
  event.preventDefault();
  $("plot-image").src = `${link.getAttribute("href")}?t=${Date.now()}`;
  $("plot-view").hidden = false;
});
$("plot-close").addEventListener("click", () => { $("plot-view").hidden = true; });

async function loadPresets() {
  const presets = await (await api("/presets")).json();
  $("preset-name").replaceChildren(...presets.map((preset) => {
    const option = document.createElement("option");
    option.value = preset.name;
    option.textContent = preset.name;
    option.title = preset.description;
    return option;
  }));
}

$("preset-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const record = await post(`/presets/${$("preset-name").value}/submit`, null);
    $("preset-status").textContent = `queued ${record.id.slice(0, 8)}`;
    refreshJobs();
  } catch (error) {
    $("preset-status").textContent = String(error.message || error);
    if (/token/i.test(String(error.message))) $("token-box").open = true;
  }
});

loadPresets();
refreshJobs();
setInterval(refreshJobs, 2000);
