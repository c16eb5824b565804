"""The web page at `/`, end to end in headless Chromium (Debian's, driven by Playwright), checked
for what a person sees: visible text, loaded images, the models' state, no console errors.

Screenshots of the fresh page, a digit read, a sum and a running job go to pytest's tmp_path."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.photo_like import encode, photo_of_digit, photo_of_row
from training.data.sequences import DOUBTFUL_BELOW

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("No chromium: install Debian's package `chromium` (.ci/run does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Console:
    """Errors the page logged or threw."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(
            f"{message.text} at {message.location}"))  # fmt: skip
        page.on("pageerror", lambda error: self.errors.append(str(error)))


def open_page(browser, url: str, **context_options):
    """A new browser context on `url`, its console watched (`page.console.errors`)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, **context_options)
    opened = context.new_page()
    console = Console(opened)
    opened.goto(url)
    return context, opened, console


@pytest.fixture
def page(browser, stack):
    context, opened, console = open_page(browser, stack.base_url + "/")
    opened.console_errors = console.errors
    yield opened
    context.close()


def draw(page, canvas: str, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes given in fractions of the canvas's width and height."""
    box = page.locator(canvas).bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=4)
        page.mouse.up()


def ring(cx: float, cy: float, rx: float, ry: float) -> list[tuple[float, float]]:
    angles = np.linspace(0, 2 * np.pi, 40)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


# What a person sees, measured in the page.

VISIBLE_IMAGES = """() => [...document.images]
  .filter((image) => image.getClientRects().length > 0)
  .map((image) => ({src: image.getAttribute('src') || '', alt: image.alt,
                    complete: image.complete, width: image.naturalWidth}))"""


def visible_images(page) -> list[dict]:
    return page.evaluate(VISIBLE_IMAGES)


def assert_no_broken_images(page) -> None:
    """Every image on screen has a source, has loaded, and has alt text."""
    for image in visible_images(page):
        assert image["src"] and image["complete"] and image["width"] > 0, image
        assert image["alt"].strip(), image


def card(page, which: str) -> dict:
    """A default model's card in the status strip: its state and the words it shows."""
    locator = page.locator(f"#status-{which}")
    return {
        "state": locator.get_attribute("data-state"),
        "text": locator.inner_text(),
        "progress": locator.locator("progress").is_visible(),
        "button": locator.locator("button.train").is_visible(),
    }


CONTRAST = """() => {
  const channel = (value) => { value /= 255;
    return value <= 0.03928 ? value / 12.92 : ((value + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const rgba = (text) => text.match(/[\\d.]+/g).map(Number);
  const background = (element) => {
    for (let node = element; node; node = node.parentElement) {
      const color = rgba(getComputedStyle(node).backgroundColor);
      if (color.length < 4 || color[3] > 0.9) return color;
    }
    return [255, 255, 255];
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    const element = text.parentElement;
    if (!text.textContent.trim() || !element.getClientRects().length) continue;
    const style = getComputedStyle(element);
    if (style.visibility === 'hidden' || style.clip === 'rect(0px, 0px, 0px, 0px)') continue;
    const [a, b] = [luminance(rgba(style.color)), luminance(background(element))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(style.fontSize) >= 24 ||
      (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    const words = text.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) low.push(`${words}: ${ratio.toFixed(2)}`);
  }
  return low;
}"""

UNLABELLED = """() => [...document.querySelectorAll('input, select, button, textarea, canvas')]
  .filter((element) => !(element.labels && element.labels.length) &&
          !element.getAttribute('aria-label') && !element.getAttribute('aria-labelledby') &&
          !(element.tagName === 'BUTTON' && element.textContent.trim()))
  .map((element) => element.outerHTML.slice(0, 80))"""

FOCUSED = """() => {
  const element = document.activeElement;
  const shown = (node) => { const style = getComputedStyle(node);
    return style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2; };
  const holder = element.closest('label.file') || element;
  return {id: element.id || element.textContent.trim().slice(0, 20), tag: element.tagName,
          visible: shown(holder)};
}"""


def assert_keyboard_and_reader_friendly(page) -> None:
    """Every control is labelled, reached with Tab with a visible focus ring (file inputs too),
    results are announced, and all text on screen has enough contrast."""
    assert page.evaluate(UNLABELLED) == []
    reached = []
    for _ in range(25):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused["tag"] == "BODY":
            continue  # focus between the page and the browser's own controls
        assert focused["visible"], focused
        reached.append(focused["id"])
    assert {"digit-read", "digit-file", "sum-row-file", "sum-files", "sum-method"} <= set(reached)
    for region in ("#digit-result", "#sum-result", "#status-digit .state", "#job-state"):
        assert page.get_attribute(region, "aria-live") == "polite"
    assert page.evaluate(CONTRAST) == []


def shoot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


# A fresh start, as a new user sees it: the default models queued, then training.


def test_a_fresh_start_says_the_default_models_are_training(browser, mnist_path, tmp_path):
    from tests.conftest import FAULTS_DB
    from tests.stack import ServiceStack

    fresh = ServiceStack(
        FAULTS_DB, tmp_path, MNIST_PATH=str(mnist_path), BOOTSTRAP_MODELS="true",
        BOOTSTRAP_OVERRIDES=json.dumps({"epochs": 2, "train_limit": 3000, "test_limit": 500}),
        PRELOAD_MODELS="false",
    )  # fmt: skip
    fresh.start(worker=False)
    context = None
    try:
        context, page, console = open_page(browser, fresh.base_url + "/")
        page.wait_for_selector("#status-digit[data-state='queued']", timeout=WAIT_MS)
        page.wait_for_selector("#status-calculator[data-state='none']", timeout=WAIT_MS)
        [job] = fresh.client.get("/jobs").json()["items"]  # the bootstrap job
        digit = card(page, "digit")
        assert "Queued" in digit["text"] and job["id"][:8] in digit["text"]
        calculator = card(page, "calculator")
        assert "No calculator yet" in calculator["text"] and "digit model" in calculator["text"]
        assert page.locator("#status-calculator button.train").is_disabled()
        # Nothing empty or broken before first use: no result, no image, no empty table.
        for hidden in ("#digit-result", "#sum-result", "#job-view"):
            assert not page.locator(hidden).is_visible()
        assert visible_images(page) == []
        assert (
            page.locator("#digit-notice").is_visible() and page.locator("#sum-notice").is_visible()
        )
        page.wait_for_selector(f"#jobs-table tr[data-job='{job['id']}']")
        assert_keyboard_and_reader_friendly(page)
        shoot(page, tmp_path / "fresh.png")

        fresh.start_worker()
        page.wait_for_selector("#status-digit[data-state='training'] .state:has-text('epoch')",
                               timeout=120_000)  # fmt: skip
        digit = card(page, "digit")
        assert re.search(r"Training: epoch [12] of 2", digit["text"]), digit
        assert digit["progress"] and "409" in digit["text"]
        page.click("#status-digit button.follow")  # the training job, followed live below
        page.wait_for_selector(f"#job-title:has-text('{job['id'][:8]}: cnn')")
        page.wait_for_selector("#job-state:has-text('running, epoch')")
        shoot(page, tmp_path / "fresh-training.png")
        assert console.errors == []
    finally:
        if context:
            context.close()
        fresh.stop()


# Reading digits and sums on the session's models.


@pytest.mark.parametrize(
    ("digit", "strokes"),
    [
        (0, [ring(0.5, 0.5, 0.22, 0.33)]),
        (1, [[(0.5, 0.15), (0.5, 0.85)]]),
        (7, [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]),
    ],
)
def test_drawing_a_digit_reads_it(page, stack, digit_model, digit, strokes, tmp_path):
    page.goto(f"{stack.base_url}/?model={digit_model['id']}")  # not whichever cnn is newest
    page.wait_for_selector("#status-digit[data-state='ready']", timeout=WAIT_MS)
    draw(page, "#digit-canvas", strokes)
    page.click("#digit-read")
    page.wait_for_selector("#digit-result:not([hidden])")
    assert page.text_content("#digit-answer") == str(digit)
    assert page.locator("#digit-bars li").count() == 10
    page.wait_for_function("document.getElementById('digit-seen').naturalWidth === 28")
    assert_no_broken_images(page)
    assert digit_model["id"] in page.text_content("#digit-model")
    if digit == 7:
        shoot(page, tmp_path / "digit.png")
    assert page.console_errors == []


def test_reading_an_empty_pad_asks_for_a_drawing_first(page):
    page.click("#digit-read")
    page.wait_for_selector("#digit-error:not([hidden])")
    assert "Draw a digit" in page.text_content("#digit-error")
    assert not page.locator("#digit-result").is_visible()


def test_the_strip_shows_the_models_the_page_reads_with(page, stack, digit_model,
                                                        calculator_model):  # fmt: skip
    page.goto(f"{stack.base_url}/?model={digit_model['id']}&calculator={calculator_model['id']}")
    page.wait_for_selector("#status-calculator[data-state='ready']", timeout=WAIT_MS)
    digit, calculator = card(page, "digit"), card(page, "calculator")
    assert digit["state"] == "ready" and digit_model["id"][:8] in digit["text"]
    accuracy = digit_model["metrics"]["test_accuracy"]
    assert f"test accuracy {100 * accuracy:.1f}%" in digit["text"]
    exact = calculator_model["metrics"]["test_exact_sum_accuracy"]
    assert calculator_model["id"][:8] in calculator["text"]
    assert f"exact sums {100 * exact:.1f}%" in calculator["text"]
    assert not digit["button"] and not calculator["button"]
    assert page.console_errors == []


def test_uploading_a_photo_answers_as_the_api_does(page, stack, digit_model, test_digits, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(photo_of_digit(test_digits[0][7], np.random.default_rng(2)), "JPEG"))
    page.set_input_files("#digit-file", str(photo))
    page.wait_for_selector("#digit-result:not([hidden])")
    expected = stack.client.post("/predict/digit", files=[("file", ("p.jpg", photo.read_bytes()))])
    assert page.text_content("#digit-answer") == str(expected.json()["digit"])


def test_a_photo_of_a_row_is_added_up_with_each_digit_s_confidence(
    page, stack, digit_model, test_digits, tmp_path
):
    row = tmp_path / "row.jpg"
    row.write_bytes(encode(photo_of_row(test_digits[0][:10], np.random.default_rng(4)), "JPEG"))
    page.goto(f"{stack.base_url}/?model={digit_model['id']}")
    page.select_option("#sum-method", "digit-model")
    page.set_input_files("#sum-row-file", str(row))
    page.wait_for_selector("#sum-result:not([hidden])")
    expected = stack.client.post(
        "/predict/sum", params={"method": "digit-model", "model": digit_model["id"]},
        files={"file": ("row.jpg", row.read_bytes())},
    ).json()  # fmt: skip
    positions = page.locator("#sum-positions li")
    assert positions.count() == 10
    assert page.text_content("#sum-answer") == str(expected["sum"])
    for index, (digit, confidence, running) in enumerate(
        zip(expected["digits"], expected["confidences"], expected["cumulative"], strict=True)
    ):
        position = positions.nth(index)
        assert position.locator(".digit").inner_text() == str(digit)
        assert position.locator(".confidence").inner_text() == f"{round(100 * confidence)}% sure"
        assert position.locator(".running").inner_text() == f"running sum {running}"
        doubtful = confidence < DOUBTFUL_BELOW
        assert ("doubt" in (position.get_attribute("class") or "")) == doubtful
        assert position.locator(".flag").count() == int(doubtful)
    assert page.locator("#sum-doubt").is_visible() == expected["uncertain"]
    assert "digit by digit" in page.text_content("#sum-method-used")
    page.wait_for_function(
        "[...document.querySelectorAll('#sum-positions img')].every((i) => i.naturalWidth === 28)"
    )
    assert page.locator("#sum-positions img").count() == 10
    assert_no_broken_images(page)
    shoot(page, tmp_path / "sum.png")
    assert page.console_errors == []


def test_an_upload_that_is_not_an_image_shows_the_service_s_message(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#digit-file", str(notes))
    page.wait_for_selector("#digit-error:not([hidden])")
    assert "not an image" in page.text_content("#digit-error")


# Jobs: followed live, their plots inline.


# A figure's picture as the page shows it: the plot URL it came from (`data-shown`) and its size.
SHOWN_PLOT = """(name) => {
  const figure = document.querySelector(`#job-plots figure[data-plot="${name}"]:not([hidden])`);
  const image = figure?.querySelector('img');
  return figure && image.complete && image.naturalWidth > 300 ? figure.dataset.shown : null;
}"""


def shown_plot(page, name: str, timeout: float = WAIT_MS) -> str:
    """The URL of the plot `name` once the page shows it."""
    return page.wait_for_function(SHOWN_PLOT, arg=name, timeout=timeout).json_value()


def plot_version(url: str) -> int:
    """How many epochs a plot URL the page asked for covers (its `?v=<count>-<status>`)."""
    return int(re.search(r"\?v=(\d+)-", url)[1])


def test_a_running_job_s_plots_are_shown_and_redrawn_until_it_finishes(
    page, stack, digit_model, tmp_path
):
    # Hundreds of short epochs (well under a second each): running for as long as the page
    # needs, then cancelled, so no wait depends on how fast this machine trains.
    job = stack.submit("mlp", hidden_units=[8], epochs=200, batch_size=64, train_limit=2000,
                       test_limit=100)  # fmt: skip
    try:
        stack.wait_until_running(job["id"], timeout=120)  # after any job queued before it
        row = f"#jobs-table tr[data-job='{job['id']}']"
        page.wait_for_selector(row, timeout=WAIT_MS)
        page.click(f"{row} button[data-show]")
        assert page.get_attribute(f"{row} button[data-show]", "aria-pressed") == "true"
        # The history and the gradients while the job runs, then redrawn after a later epoch.
        first = shown_plot(page, "history")
        assert job["id"] in first and first.endswith("-running"), first
        assert "-running" in shown_plot(page, "gradients")
        assert page.inner_text("#job-state").startswith("running")
        assert page.locator("#job-progress").is_visible()
        assert_no_broken_images(page)
        shoot(page, tmp_path / "job-running.png")
        redrawn = page.wait_for_function(
            f"() => {{ const shown = ({SHOWN_PLOT})('history');"
            f" return shown && shown !== {json.dumps(first)} ? shown : null; }}",
            timeout=WAIT_MS,
        ).json_value()
        assert plot_version(redrawn) > plot_version(first), (first, redrawn)
    finally:
        stack.client.post(f"/jobs/{job['id']}/cancel")
    # Cancelled: the page says so, and stops asking.
    assert stack.wait_until_finished(job["id"])["status"] == "cancelled"
    page.wait_for_selector("#job-state:text-matches('^cancelled, epoch')", timeout=WAIT_MS)
    assert "Cancelled" in page.inner_text("#job-outcome")
    assert not page.locator("#job-progress").is_visible()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    time.sleep(4)
    assert not [url for url in asked if f"/jobs/{job['id']}" in url]

    # A finished job (the session's digit model's): its outcome and every plot's final version.
    # The table lists only the latest jobs, so it is shown the way its Show button does.
    trained = stack.job(digit_model["job_id"])
    page.evaluate("(id) => selectJob(id)", trained["id"])
    page.wait_for_selector("#job-outcome:has-text('test accuracy')", timeout=WAIT_MS)
    accuracy = f"test accuracy {100 * trained['result']['test_accuracy']:.1f}%"
    assert accuracy in page.inner_text("#job-outcome")
    for name in ("history", "gradients", "confusion"):
        final = shown_plot(page, name)
        assert trained["id"] in final and final.endswith("-succeeded"), final
    history = stack.client.get(f"/jobs/{trained['id']}/history").json()
    assert page.inner_text("#job-plots figure[data-plot='history'] figcaption") == (
        f"after {len(history)} epochs"
    )
    # Each picture is also its full-size link.
    for figure in page.locator("#job-plots figure").all():
        picture = figure.locator("img").get_attribute("src")
        assert picture.startswith("blob:") and figure.locator("a").get_attribute("href") == picture
    assert_no_broken_images(page)
    assert page.console_errors == []


def test_a_backprop_job_shows_its_graph_and_every_node_s_value_and_gradient(page, stack, tmp_path):
    job = stack.wait_until_finished(stack.submit("backprop", steps=2)["id"])
    assert job["status"] == "succeeded", job["error"]
    row = f"#jobs-table tr[data-job='{job['id']}']"
    page.wait_for_selector(row, timeout=WAIT_MS)
    page.click(f"{row} button[data-show]")
    page.wait_for_function(
        "document.querySelector('#job-graph-figure figure:not([hidden]) img')?.naturalWidth > 600"
    )
    nodes = job["result"]["nodes"]
    rows = page.locator("#graph-nodes tbody tr")
    assert rows.count() == len(nodes)
    for index, node in enumerate(nodes):
        name, operation, inputs, value, grad = rows.nth(index).locator("th, td").all_inner_texts()
        assert (name, operation) == (node["name"], node["op"])
        assert inputs == (", ".join(node["inputs"]) or "-")
        assert float(value) == pytest.approx(node["value"], rel=1e-3)
        assert float(grad) == pytest.approx(node["grad"], rel=1e-3)
    alt = page.get_attribute("#job-graph-figure img", "alt")
    assert "loss" in alt and f"{len(nodes)} nodes" in alt
    shown_loss = re.search(r"Loss (\S+) before the first update", page.inner_text("#job-outcome"))
    assert float(shown_loss[1]) == pytest.approx(job["result"]["loss"], rel=1e-3)
    assert_no_broken_images(page)
    shoot(page, tmp_path / "job-graph.png")
    assert page.console_errors == []


def test_presets_are_listed_and_submitted(page, stack):
    names = page.locator("#preset-name option").all_text_contents()
    assert names == [preset["name"] for preset in stack.client.get("/presets").json()]
    page.select_option("#preset-name", "calculator")
    page.click("#preset-form button")
    page.wait_for_selector("#preset-status:has-text('queued')")
    queued = stack.client.get("/jobs", params={"kind": "calculator", "limit": 1}).json()["items"][0]
    assert page.text_content("#preset-status") == f"queued {queued['id'][:8]}"
    stack.client.post(f"/jobs/{queued['id']}/cancel")  # a full training run is not the point


def test_the_page_fits_a_phone(browser, stack):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)  # fmt: skip
    phone = context.new_page()
    phone.goto(stack.base_url + "/")
    for canvas in ("#digit-canvas", "#sum-canvas"):
        assert phone.locator(canvas).bounding_box()["width"] <= 390
    overflowing = phone.evaluate("""() => [...document.querySelectorAll('body *')]
      .filter((element) => element.getBoundingClientRect().right > 390 &&
                           !element.closest('.table-scroll'))
      .map((element) => element.outerHTML.slice(0, 100))""")
    assert overflowing == []
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_with_an_api_token_the_page_asks_for_it_and_sends_it(browser, tmp_path):
    """Also: a missing default model's card offers its preset, and its button trains one."""
    from tests.conftest import FAULTS_DB
    from tests.stack import ServiceStack

    guarded = ServiceStack(FAULTS_DB, tmp_path, API_TOKEN="page-token-of-16-chars")
    guarded.start(worker=False)
    try:
        context, page, _ = open_page(browser, guarded.base_url + "/")
        page.wait_for_selector("#status-digit[data-state='none']", timeout=WAIT_MS)
        assert "No digit model yet" in card(page, "digit")["text"]
        page.click("#status-digit button.train")
        page.wait_for_selector("#status-digit .detail:has-text('token')")
        assert page.locator("#token-box").get_attribute("open") is not None
        page.fill("#token", "page-token-of-16-chars")
        page.dispatch_event("#token", "change")
        page.click("#status-digit button.train")
        page.wait_for_selector("#status-digit[data-state='queued']", timeout=WAIT_MS)
        [job] = guarded.client.get("/jobs").json()["items"]
        assert job["kind"] == "cnn" and job["id"][:8] in card(page, "digit")["text"]
        page.select_option("#preset-name", "mlp-64-64")
        page.click("#preset-form button")
        page.wait_for_selector("#preset-status:has-text('queued')")
        assert guarded.client.get("/jobs").json()["total"] == 2
        context.close()
    finally:
        guarded.stop()


def test_with_protected_reads_the_page_shows_plots_with_the_token(browser, tmp_path):
    """Plots are fetched with the token (an <img src> cannot send it) and shown from a blob; a
    plot refused for want of the token says so in its place and opens the token box."""
    from tests.conftest import FAULTS_DB
    from tests.stack import ServiceStack

    token = "plot-token-of-16-chars"
    guarded = ServiceStack(FAULTS_DB, tmp_path, API_TOKEN=token, PROTECT_READS="true")
    guarded.client.headers["Authorization"] = f"Bearer {token}"
    guarded.start()
    context = None
    try:
        job = guarded.wait_until_finished(guarded.submit("backprop", steps=2)["id"])
        assert job["status"] == "succeeded", job["error"]
        context, page, console = open_page(browser, guarded.base_url + "/")
        page.wait_for_selector("#status-digit[data-state='error']", timeout=WAIT_MS)
        page.fill("#token", token)
        page.dispatch_event("#token", "change")
        row = f"#jobs-table tr[data-job='{job['id']}']"
        page.wait_for_selector(row, timeout=WAIT_MS)
        page.click(f"{row} button[data-show]")
        graph = "#job-graph-figure figure[data-plot='graph']"
        shown = f'() => document.querySelector("{graph}:not([hidden]) img")?.naturalWidth > 600'
        page.wait_for_function(shown, timeout=WAIT_MS)
        picture = page.get_attribute(f"{graph} img", "src")
        assert picture.startswith("blob:") and page.get_attribute(f"{graph} a", "href") == picture
        assert page.locator(f"{graph} .plot-problem").is_hidden()
        assert_no_broken_images(page)
        shoot(page, tmp_path / "job-graph-with-token.png")
        # The token cleared while a newer version of the plot is on its way: refused, and said.
        page.fill("#token", "")
        page.dispatch_event("#token", "change")
        page.evaluate(
            """(selector) => { const figure = document.querySelector(selector);
                 plotFigure(figure.parentElement, 'graph', `${figure.dataset.url}?again`,
                            'the graph', 'the graph again'); }""",
            graph,
        )
        page.wait_for_selector(f"{graph} .plot-problem:not([hidden])", timeout=WAIT_MS)
        assert "Plots need the API token: enter it under Jobs" in page.inner_text(graph)
        assert page.locator(f"{graph} img").is_hidden()
        assert page.locator("#token-box").get_attribute("open") is not None
        # The token entered again: the job and its plot are asked for again, and shown.
        page.fill("#token", token)
        page.dispatch_event("#token", "change")
        page.wait_for_function(shown, timeout=WAIT_MS)
        assert page.locator(f"{graph} .plot-problem").is_hidden()
        assert page.get_attribute(f"{graph} img", "src") != picture
        # The picture it replaced was freed (reading it fails: one more expected console error).
        freed = "(url) => fetch(url).then(() => 'kept', () => 'freed')"
        assert page.evaluate(freed, picture) == "freed"
        # The only console errors: the 401s before the token was entered and while it was not.
        assert any("status of 401" in error for error in console.errors), console.errors
        expected = ("status of 401", "ERR_FILE_NOT_FOUND")
        assert all(any(e in error for e in expected) for error in console.errors), console.errors
    finally:
        if context:
            context.close()
        guarded.stop()
