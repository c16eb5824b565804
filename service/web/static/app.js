// The digit service's page: the default models' state, draw or upload digits and read the
// answers, follow jobs with their plots inline.
"use strict";

const $ = (id) => document.getElementById(id);

// Polling: bounded intervals, none while the page is hidden, never two requests of one kind at once.
const POLL_BUSY_MS = 1500; // a job or a default model is training, or a default model is missing
const POLL_IDLE_MS = 10000; // nothing is changing

function every(task) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    if (running) {
      again = true; // asked again meanwhile: once more right after, never two at once
      return;
    }
    clearTimeout(timer);
    running = true;
    let wait = POLL_IDLE_MS;
    try {
      wait = document.hidden ? POLL_IDLE_MS : await task();
    } catch (error) {
      // shown by the task where it matters; tried again after POLL_IDLE_MS
    } finally {
      running = false;
      timer = setTimeout(run, again ? 0 : wait);
      again = false;
    }
  };
  return run;
}

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
  return {
    clear,
    empty: () => canvas.dataset.empty === "true",
    blob: () => new Promise((resolve) => canvas.toBlob(resolve, "image/png")),
  };
}

// The API token, if the service has one (API_TOKEN): kept in this browser only.
const TOKEN_KEY = "digit-service-token";
$("token").value = localStorage.getItem(TOKEN_KEY) || "";
$("token").addEventListener("change", () => {
  localStorage.setItem(TOKEN_KEY, $("token").value.trim());
  refreshModels();
  refreshJobs();
  loadPresets(); // refused without the token when the page opened
  if (selectedJob) {
    forgetRefusedPlots();
    selectJob(selectedJob); // its plots, with the token this time
  }
});

function api(url, options = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return fetch(url, { ...options, headers: { ...headers, ...(options.headers || {}) } });
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// The service's refusal as an ApiError, with its message.
async function apiError(response) {
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  return new ApiError(response.status, body.detail || `HTTP ${response.status}`);
}

// The JSON body of a request, or an ApiError with the service's message.
async function call(url, options = {}) {
  const response = await api(url, options);
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) $("token-box").open = true;
    throw await apiError(response);
  }
  return response.json().catch(() => ({ detail: response.statusText }));
}

const get = (url) => call(url);
const post = (url, form) => call(url, { method: "POST", body: form });

function showError(element, error) {
  element.textContent = error ? String(error.message || error) : "";
  element.hidden = !error;
}

// Set text only when it changes, so live regions announce changes, not every refresh.
function say(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function make(tag, properties = {}, ...children) {
  const element = Object.assign(document.createElement(tag), properties);
  element.append(...children);
  return element;
}

const png = (base64) => `data:image/png;base64,${base64}`;
const percent = (value, digits = 1) => `${(100 * value).toFixed(digits)}%`;
const short = (id) => id.slice(0, 8);
// Four significant digits, as the compute-graph plot shows them.
const number = (value) => (value === null || value === undefined ? "-" : String(Number(Number(value).toPrecision(4))));

// Which models answer: the page's own ?model= (a digit model) and ?calculator= (id or alias),
// else the service's defaults. A link can carry them.
const chosen = new URLSearchParams(location.search);
const modelQuery = (name) => (chosen.get(name) ? `&model=${encodeURIComponent(chosen.get(name))}` : "");

// Progress of a job: the fraction done and the words for it.
function progressOf(job) {
  const p = job.progress || {};
  if (p.epochs) {
    const done = (p.epoch - 1 + (p.batches ? (p.batch || 0) / p.batches : 1)) / p.epochs;
    return [Math.min(Math.max(done, 0), 1), `epoch ${p.epoch} of ${p.epochs}`];
  }
  if (p.steps) return [p.step / p.steps, `step ${p.step} of ${p.steps}`];
  return [job.status === "succeeded" ? 1 : 0, ""];
}

const RUNNING = new Set(["queued", "running"]);

// The default models: ready, training, queued, or missing (with a button that trains one).
const DEFAULTS = {
  digit: { card: $("status-digit"), kind: "cnn", query: "model", preset: "cnn",
    noun: "digit model", answers: "Digits are read" },
  calculator: { card: $("status-calculator"), kind: "calculator", query: "calculator",
    preset: "calculator-from-cnn", noun: "calculator", answers: "Sums are read" },
};

function accuracyOf(model) {
  const m = model.metrics || {};
  if (model.kind === "calculator") {
    const parts = [];
    if (m.test_exact_sum_accuracy !== undefined) parts.push(`exact sums ${percent(m.test_exact_sum_accuracy)}`);
    if (m.test_digit_accuracy !== undefined) parts.push(`digits ${percent(m.test_digit_accuracy)}`);
    return parts.length ? `test accuracy: ${parts.join(", ")}` : "";
  }
  return m.test_accuracy !== undefined ? `test accuracy ${percent(m.test_accuracy)}` : "";
}

async function defaultState(which) {
  const spec = DEFAULTS[which];
  const named = chosen.get(spec.query);
  let model = null;
  if (named) {
    try {
      model = await get(`/models/${encodeURIComponent(named)}`);
    } catch (error) {
      if (error.status !== 404) throw error;
      return { state: "missing", text: `No model named “${named}”`,
        detail: `This page's link asks for ${spec.noun} “${named}”, which is not stored.` };
    }
  } else {
    model = (await get(`/models?kind=${spec.kind}&limit=1`)).items[0] || null;
  }
  const jobs = (await get(`/jobs?kind=${spec.kind}&limit=10`)).items;
  const active = jobs.find((job) => job.status === "running") || jobs.find((job) => job.status === "queued");
  return { model, active, latest: jobs[0] || null, named };
}

function showModelCard(which, found, digitReady) {
  const spec = DEFAULTS[which];
  const card = spec.card;
  const state = card.querySelector(".state");
  const detail = card.querySelector(".detail");
  const bar = card.querySelector("progress");
  const button = card.querySelector("button.train");
  bar.hidden = true;
  button.hidden = true;
  card.dataset.job = "";
  if (found.state === "missing") {
    card.dataset.state = "missing";
    say(state, found.text);
    say(detail, found.detail);
    return;
  }
  const { model, active, latest, named } = found;
  const showJob = (job) => {
    const [fraction, words] = progressOf(job);
    bar.hidden = job.status !== "running";
    bar.value = fraction;
    bar.title = words;
    return words;
  };
  if (model) {
    card.dataset.state = "ready";
    const link = !named ? "" : named === model.id ? " (chosen by this page's link)"
      : ` (“${named}”, chosen by this page's link)`;
    say(state, `Ready: ${model.kind} ${short(model.id)}${link}`);
    const accuracy = accuracyOf(model);
    const newer = active && !named
      ? ` Job ${short(active.id)} is training a newer one${active.status === "running" ? `: ${showJob(active) || "starting"}` : " (queued)"}.`
      : "";
    say(detail, `${accuracy ? `${accuracy}.` : ""}${newer}`.trim());
    card.dataset.job = active && !named ? active.id : "";
    return;
  }
  card.dataset.job = active ? active.id : "";
  if (active && active.status === "running") {
    card.dataset.state = "training";
    const words = showJob(active);
    say(state, `Training: ${words || "starting"}`);
    say(detail, `Job ${short(active.id)} is training it. ${spec.answers} once it has finished; until then they answer 409.`);
    return;
  }
  if (active) {
    card.dataset.state = "queued";
    say(state, "Queued: waiting for a worker");
    say(detail, `Job ${short(active.id)} will train it when a worker is free. ${spec.answers} once it has finished.`);
    return;
  }
  card.dataset.state = "none";
  const failed = latest && latest.status === "failed" ? ` The last job, ${short(latest.id)}, failed: ${latest.error || "no reason given"}` : "";
  say(state, `No ${spec.noun} yet`);
  button.hidden = false;
  if (which === "calculator" && !digitReady) {
    button.disabled = true;
    say(detail, `It is built from the digit model: possible once that is ready.${failed}`);
  } else {
    button.disabled = false;
    say(detail, `Nothing answers until one is trained (preset ${spec.preset}).${failed}`);
  }
}

const refreshModels = every(async () => {
  let busy = false;
  let digitReady = false;
  let calculatorReady = false;
  for (const which of ["digit", "calculator"]) {
    const card = DEFAULTS[which].card;
    try {
      const found = await defaultState(which);
      showModelCard(which, found, digitReady);
      if (which === "digit") digitReady = Boolean(found.model);
      else calculatorReady = Boolean(found.model);
      busy = busy || Boolean(found.active) || card.dataset.state !== "ready";
    } catch (error) {
      card.dataset.state = "error";
      say(card.querySelector(".state"), `Cannot tell: ${error.message}`);
      say(card.querySelector(".detail"), error.status === 401 || error.status === 403
        ? "Enter the API token (under Jobs) to see the models." : "");
      card.querySelector("progress").hidden = true;
      card.querySelector("button.train").hidden = true;
    }
  }
  for (const spec of Object.values(DEFAULTS)) {
    spec.card.querySelector("button.follow").hidden = !spec.card.dataset.job;
  }
  const known = (which) => !["loading", "error"].includes(DEFAULTS[which].card.dataset.state);
  $("digit-notice").hidden = digitReady || !known("digit");
  $("sum-notice").hidden = digitReady || calculatorReady || !known("digit") || !known("calculator");
  return busy ? POLL_BUSY_MS : POLL_IDLE_MS;
});

for (const spec of Object.values(DEFAULTS)) {
  spec.card.querySelector("button.train").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const record = await post(`/presets/${spec.preset}/submit`, null);
      say(spec.card.querySelector(".detail"), `Queued job ${short(record.id)}.`);
      refreshJobs();
    } catch (error) {
      say(spec.card.querySelector(".detail"), error.message);
      button.disabled = false;
      return;
    }
    refreshModels();
  });
  spec.card.querySelector(".follow").addEventListener("click", () => {
    if (spec.card.dataset.job) selectJob(spec.card.dataset.job);
  });
}

// One digit.
const digitPad = drawingPad($("digit-canvas"), 18);

async function readDigit(file, name) {
  const form = new FormData();
  form.append("file", file, name);
  showError($("digit-error"), null);
  try {
    const answer = await post(`/predict/digit?debug=true${modelQuery("model")}`, form);
    $("digit-answer").textContent = answer.digit;
    $("digit-confidence").textContent = `${percent(answer.confidence)} sure`;
    $("digit-seen").src = png(answer.image);
    $("digit-bars").replaceChildren(...answer.probabilities.map((p, digit) => {
      const row = make("li", { className: digit === answer.digit ? "best" : "" },
        make("span", { textContent: digit }),
        make("span", { className: "bar", ariaHidden: "true" }),
        make("span", { textContent: percent(p) }));
      row.querySelector(".bar").style.width = percent(p);
      return row;
    }));
    $("digit-model").textContent = `model ${answer.model.kind} ${answer.model.id}`;
    $("digit-result").hidden = false;
  } catch (error) {
    $("digit-result").hidden = true;
    showError($("digit-error"), error);
  }
}

$("digit-read").addEventListener("click", async () => {
  if (digitPad.empty()) {
    showError($("digit-error"), "Draw a digit on the pad first, or upload a photo of one.");
    return;
  }
  readDigit(await digitPad.blob(), "drawing.png");
});
$("digit-clear").addEventListener("click", () => {
  digitPad.clear();
  $("digit-result").hidden = true;
  showError($("digit-error"), null);
});
$("digit-file").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) readDigit(file, file.name);
  event.target.value = "";
});

// Ten digits.
const sumPad = drawingPad($("sum-canvas"), 9);
const METHOD_WORDS = { calculator: "read by the calculator", "digit-model": "read digit by digit by the digit model" };
// Below this confidence a digit makes the sum uncertain (the service's own threshold, in the page).
const DOUBTFUL_BELOW = Number(document.body.dataset.doubtfulBelow) || 0.9;

async function readSum(files, field) {
  const form = new FormData();
  for (const [file, name] of files) form.append(field, file, name);
  showError($("sum-error"), null);
  try {
    const method = $("sum-method").value;
    const model = modelQuery(method === "digit-model" ? "model" : "calculator");
    const answer = await post(`/predict/sum?debug=true&method=${method}${model}`, form);
    $("sum-answer").textContent = answer.sum;
    $("sum-method-used").textContent = METHOD_WORDS[answer.method] || answer.method;
    $("sum-doubt").hidden = !answer.uncertain;
    const confidences = answer.confidences || [];
    $("sum-positions").replaceChildren(...answer.digits.map((digit, index) => {
      const confidence = confidences[index];
      const doubtful = confidence !== undefined && confidence < DOUBTFUL_BELOW;
      const item = make("li", { className: doubtful ? "doubt" : "" });
      if (answer.images && answer.images[index]) {
        item.append(make("img", { src: png(answer.images[index]), width: 42, height: 42,
          alt: `position ${index + 1} as the model saw it` }));
      }
      item.append(
        make("span", { className: "position", textContent: `#${index + 1}` }),
        make("span", { className: "digit", textContent: digit }),
        make("span", { className: "confidence",
          textContent: confidence === undefined ? "no confidence" : `${percent(confidence, 0)} sure` }),
        make("span", { className: "running", textContent: `running sum ${answer.cumulative[index]}` }),
      );
      if (confidence !== undefined) {
        const meter = make("span", { className: "meter", ariaHidden: "true" }, make("span"));
        meter.firstChild.style.width = percent(confidence);
        item.append(meter);
      }
      if (doubtful) item.append(make("span", { className: "flag", textContent: "check this one" }));
      return item;
    }));
    $("sum-model").textContent = `model ${answer.model.kind} ${answer.model.id}`;
    $("sum-result").hidden = false;
  } catch (error) {
    $("sum-result").hidden = true;
    showError($("sum-error"), error);
  }
}

$("sum-read").addEventListener("click", async () => {
  if (sumPad.empty()) {
    showError($("sum-error"), "Write 10 digits on the pad first, or upload a photo of a row.");
    return;
  }
  readSum([[await sumPad.blob(), "row.png"]], "file");
});
$("sum-clear").addEventListener("click", () => {
  sumPad.clear();
  $("sum-result").hidden = true;
  showError($("sum-error"), null);
});
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

// Jobs: the latest ones, and the one selected with its plots.
let selectedJob = null;

const refreshJobs = every(async () => {
  let page;
  try {
    page = await get("/jobs?limit=15");
  } catch (error) {
    return POLL_IDLE_MS; // the next refresh tries again; the table keeps what it showed
  }
  $("jobs-empty").hidden = page.items.length > 0;
  $("jobs-table").hidden = page.items.length === 0;
  $("jobs-table").tBodies[0].replaceChildren(...page.items.map((job) => {
    const [fraction, words] = progressOf(job);
    const bar = make("progress", { max: 1, value: fraction, hidden: job.status !== "running" });
    bar.setAttribute("aria-label", `progress of job ${short(job.id)}`);
    const show = make("button", { type: "button", className: "secondary small", textContent: "Show" });
    show.dataset.show = job.id;
    show.setAttribute("aria-label", `Show job ${short(job.id)} (${job.kind}) with its plots`);
    show.setAttribute("aria-pressed", String(job.id === selectedJob));
    const row = make("tr", {},
      make("td", { title: job.id }, make("code", { textContent: short(job.id) })),
      make("td", { textContent: job.kind }),
      make("td", { className: `status-${job.status}`, textContent: job.status }),
      make("td", {}, bar, " ", make("span", { className: "progress-text", textContent: words })),
      make("td", {}, show));
    row.dataset.job = job.id;
    return row;
  }));
  return page.items.some((job) => RUNNING.has(job.status)) ? POLL_BUSY_MS : POLL_IDLE_MS;
});

$("jobs-table").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-show]");
  if (button) selectJob(button.dataset.show);
});
$("job-close").addEventListener("click", () => {
  selectedJob = null;
  $("job-view").hidden = true;
  refreshJobs();
});

// Which plots each kind has, and what they show (the images' alt text).
const KERAS_PLOTS = [
  ["history", (job) => `Training history of ${job.kind} job ${short(job.id)}: loss and metrics per epoch, training and validation`],
  ["gradients", (job) => `Largest gradient of each layer of ${job.kind} job ${short(job.id)}, untrained and after each epoch`],
  ["confusion", (job) => `Confusion matrix of ${job.kind} job ${short(job.id)} on the test set`],
];

const PLOT_ORDER = ["history", "gradients", "confusion", "graph"];

// Plot images load one at a time: the service renders a few plots at once per process
// (PLOT_SLOTS) and answers 503 beyond, so the page never asks for several together. They are
// fetched through `api`, which sends the token (PROTECT_READS), and shown from a blob: an
// <img src> or a link could not send it.
let plotQueue = Promise.resolve();
const PLOT_TRIES = 4;
const PLOT_RETRY_MS = 1500;

// A plot's picture as an object URL, decoded already; an ApiError where the service refuses it.
async function loadPicture(url) {
  const response = await api(url);
  if (!response.ok) throw await apiError(response);
  const picture = URL.createObjectURL(await response.blob());
  try {
    const image = new Image();
    image.src = picture;
    await image.decode();
  } catch (error) {
    URL.revokeObjectURL(picture);
    throw new Error(`${url} is not a picture this browser can show`);
  }
  return picture;
}

// Show `picture` (an object URL, or null for none) in a figure, freeing the one it replaces.
function setPicture(figure, picture) {
  const image = figure.querySelector("img");
  const previous = image.getAttribute("src");
  if (previous && previous !== picture) URL.revokeObjectURL(previous);
  if (picture) {
    image.src = picture;
    image.parentElement.href = picture;
  } else {
    image.removeAttribute("src");
    image.parentElement.removeAttribute("href");
    delete figure.dataset.shown;
  }
  image.parentElement.hidden = !picture;
}

// A message in a figure's place: a plot that cannot be shown says why.
function plotProblem(figure, message) {
  setPicture(figure, null);
  say(figure.querySelector(".plot-problem"), message);
  figure.querySelector(".plot-problem").hidden = false;
  say(figure.querySelector("figcaption"), "");
  figure.hidden = false;
}

// A figure whose picture shows only once it has loaded: never a broken image. A newer `url`
// replaces the picture when it has loaded, so a live plot does not flicker.
function plotFigure(container, name, url, alt, caption) {
  let figure = container.querySelector(`figure[data-plot="${name}"]`);
  if (!figure) {
    const full = make("a", { target: "_blank", rel: "noopener", title: "Open at full size", hidden: true },
      make("img", { alt }));
    const problem = make("p", { className: "plot-problem error", hidden: true });
    figure = make("figure", { hidden: true }, full, problem, make("figcaption"));
    figure.dataset.plot = name;
    // In the order the plots are listed, whichever is drawn first.
    const rank = (element) => PLOT_ORDER.indexOf(element.dataset.plot);
    const after = [...container.children].find((other) => rank(other) > rank(figure));
    container.insertBefore(figure, after || null);
  }
  if (figure.dataset.url === url) return;
  figure.dataset.url = url;
  delete figure.dataset.refused;
  const attempt = async (tries) => {
    if (figure.dataset.url !== url) return; // a newer plot was asked for meanwhile
    let picture;
    try {
      picture = await loadPicture(url);
    } catch (error) {
      if (figure.dataset.url !== url) return;
      if (error.status === 401 || error.status === 403) {
        figure.dataset.refused = "true"; // asked again once a token is entered
        $("token-box").open = true;
        plotProblem(figure, error.status === 401
          ? "Plots need the API token: enter it under Jobs."
          : "Plots need the API token, and the service refused this one: enter the right one under Jobs.");
      } else if (tries > 1) {
        setTimeout(() => { plotQueue = plotQueue.then(() => attempt(tries - 1)); }, PLOT_RETRY_MS);
      } else if (!figure.dataset.shown) {
        plotProblem(figure, `This plot could not be loaded: ${error.message}`);
      }
      return;
    }
    if (figure.dataset.url !== url || !figure.isConnected) {
      URL.revokeObjectURL(picture);
      return;
    }
    setPicture(figure, picture);
    figure.dataset.shown = url;
    figure.querySelector("img").alt = alt;
    figure.querySelector(".plot-problem").hidden = true;
    say(figure.querySelector("figcaption"), caption);
    figure.hidden = false;
  };
  plotQueue = plotQueue.then(() => attempt(PLOT_TRIES));
}

// Plots the service refused for want of the token: asked for again (with it) when next drawn.
function forgetRefusedPlots() {
  for (const figure of document.querySelectorAll("figure[data-refused]")) delete figure.dataset.url;
}

function clearPlots() {
  for (const figure of document.querySelectorAll("#job-plots figure, #job-graph-figure figure")) {
    setPicture(figure, null);
  }
  $("job-plots").replaceChildren();
  $("job-graph-figure").replaceChildren();
  $("graph-nodes").tBodies[0].replaceChildren();
  $("job-graph").hidden = true;
}

function outcomeOf(job) {
  if (job.status === "failed") return `Failed: ${job.error || "no reason given"}`;
  if (job.status === "cancelled") return "Cancelled; what it recorded so far is kept.";
  if (job.status !== "succeeded" || !job.result) return "";
  const r = job.result;
  if (job.kind === "backprop") {
    return `Loss ${number(r.loss)} before the first update, ${number(r.final_loss)} after ${r.history ? r.history.length : "all"} steps; output ${number(r.output)}.`;
  }
  const parts = [];
  if (r.test_accuracy !== undefined) parts.push(`test accuracy ${percent(r.test_accuracy)}`);
  if (r.test_exact_sum_accuracy !== undefined) parts.push(`exact sums ${percent(r.test_exact_sum_accuracy)}`);
  if (r.model_id) parts.push(`model ${short(r.model_id)}`);
  return parts.length ? `Finished: ${parts.join(", ")}.` : "Finished.";
}

async function showKerasPlots(job) {
  const [history, gradients] = await Promise.all([
    get(`/jobs/${job.id}/history`), get(`/jobs/${job.id}/gradients`)]);
  const counts = { history: history.length, gradients: gradients.length,
    confusion: job.result && job.result.confusion_matrix ? 1 : 0 };
  const epochs = (count) => `${count} epoch${count === 1 ? "" : "s"}`;
  const captions = {
    history: `after ${epochs(history.length)}`,
    gradients: gradients.length > 1 ? `untrained and after ${epochs(gradients.length - 1)}` : "untrained",
    confusion: "the test set, once trained",
  };
  for (const [name, alt] of KERAS_PLOTS) {
    if (!counts[name]) continue;
    const url = `/jobs/${job.id}/plots/${name}.png?v=${counts[name]}-${job.status}`;
    plotFigure($("job-plots"), name, url, alt(job), captions[name]);
  }
  const waiting = !history.length && RUNNING.has(job.status);
  $("job-waiting").hidden = !waiting && Boolean(history.length || gradients.length);
  say($("job-waiting"), waiting
    ? "The training history appears here after the first epoch, and is redrawn after each one."
    : "This job recorded no history, so it has no plots.");
}

function showGraph(job) {
  const nodes = (job.result && job.result.nodes) || [];
  if (job.status !== "succeeded" || !nodes.length) {
    $("job-waiting").hidden = job.status !== "queued" && job.status !== "running";
    say($("job-waiting"), "The compute graph appears here when the job has finished.");
    return;
  }
  $("job-waiting").hidden = true;
  $("job-graph").hidden = false;
  const inputs = nodes.filter((node) => !node.inputs.length).map((node) => node.name);
  plotFigure($("job-graph-figure"), "graph", `/jobs/${job.id}/plots/graph.png`,
    `Compute graph of backprop job ${short(job.id)}: ${nodes.length} nodes in layers from the inputs ` +
    `${inputs.join(", ")} to ${nodes[nodes.length - 1].name}, each box with its value and gradient ` +
    "(the table below lists them)", "the first step's graph: value from the forward pass, grad by backpropagation");
  const body = $("graph-nodes").tBodies[0];
  if (body.dataset.job === job.id) return;
  body.dataset.job = job.id;
  body.replaceChildren(...nodes.map((node) => make("tr", {},
    make("th", { scope: "row", textContent: node.name }),
    make("td", { textContent: node.op || "input" }),
    make("td", { textContent: node.inputs.join(", ") || "-" }),
    make("td", { className: "number", textContent: number(node.value) }),
    make("td", { className: "number", textContent: number(node.grad) }))));
}

let jobGeneration = 0;

async function followJob(id, generation) {
  if (generation !== jobGeneration) return;
  let job;
  try {
    job = await get(`/jobs/${id}`);
  } catch (error) {
    if (generation !== jobGeneration) return;
    say($("job-state"), `Cannot read job ${short(id)}: ${error.message}`);
    if (error.status !== 404) setTimeout(() => followJob(id, generation), POLL_IDLE_MS);
    return;
  }
  if (generation !== jobGeneration) return;
  const [fraction, words] = progressOf(job);
  say($("job-title"), `Job ${short(job.id)}: ${job.kind}`);
  say($("job-state"), `${job.status}${words ? `, ${words}` : ""}${job.cancel_requested && RUNNING.has(job.status) ? " (cancelling)" : ""}`);
  $("job-progress").hidden = job.status !== "running";
  $("job-progress").value = fraction;
  say($("job-outcome"), outcomeOf(job));
  try {
    if (job.kind === "backprop") showGraph(job);
    else await showKerasPlots(job);
  } catch (error) {
    say($("job-waiting"), `Plots unavailable for now: ${error.message}`);
    $("job-waiting").hidden = false;
  }
  if (generation === jobGeneration && RUNNING.has(job.status)) {
    setTimeout(() => followJob(id, generation), POLL_BUSY_MS);
  }
}

function selectJob(id) {
  if (selectedJob !== id) {
    clearPlots();
    for (const part of ["job-state", "job-outcome"]) say($(part), "");
    $("job-progress").hidden = true;
    $("job-waiting").hidden = true;
  }
  selectedJob = id;
  jobGeneration += 1;
  $("job-view").hidden = false;
  for (const button of document.querySelectorAll("#jobs-table button[data-show]")) {
    button.setAttribute("aria-pressed", String(button.dataset.show === id));
  }
  followJob(id, jobGeneration);
  $("job-title").textContent = `Job ${short(id)}`;
  $("job-view").scrollIntoView({ block: "nearest" });
}

// Presets.
async function loadPresets() {
  let presets;
  try {
    presets = await get("/presets");
  } catch (error) {
    say($("preset-status"), error.message);
    return;
  }
  $("preset-name").replaceChildren(...presets.map((preset) =>
    make("option", { value: preset.name, textContent: preset.name, title: preset.description })));
}

$("preset-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const record = await post(`/presets/${$("preset-name").value}/submit`, null);
    $("preset-status").textContent = `queued ${short(record.id)}`;
    refreshJobs();
    refreshModels();
  } catch (error) {
    $("preset-status").textContent = String(error.message || error);
  }
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    refreshModels();
    refreshJobs();
  }
});

loadPresets();
refreshModels();
refreshJobs();
