"""The web page at `/`, end to end in headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.photo_like import encode, photo_of_digit, photo_of_row

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("No chromium: install Debian's package `chromium` (.ci/run does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    opened.goto(stack.base_url + "/")
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


@pytest.mark.parametrize(
    ("digit", "strokes"),
    [
        (0, [ring(0.5, 0.5, 0.22, 0.33)]),
        (1, [[(0.5, 0.15), (0.5, 0.85)]]),
        (7, [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]),
    ],
)
def test_drawing_a_digit_reads_it(page, stack, digit_model, digit, strokes):
    page.goto(f"{stack.base_url}/?model={digit_model['id']}")  # not whichever cnn is newest
    draw(page, "#digit-canvas", strokes)
    page.click("#digit-read")
    page.wait_for_selector("#digit-result:not([hidden])")
    assert page.text_content("#digit-answer") == str(digit)
    assert page.locator("#digit-bars li").count() == 10
    assert page.get_attribute("#digit-seen", "src").startswith("data:image/png;base64,")
    assert digit_model["id"] in page.text_content("#digit-model")


def test_uploading_a_photo_answers_as_the_api_does(page, stack, digit_model, test_digits, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(photo_of_digit(test_digits[0][7], np.random.default_rng(2)), "JPEG"))
    page.set_input_files("#digit-file", str(photo))
    page.wait_for_selector("#digit-result:not([hidden])")
    expected = stack.client.post("/predict/digit", files=[("file", ("p.jpg", photo.read_bytes()))])
    assert page.text_content("#digit-answer") == str(expected.json()["digit"])


def test_a_photo_of_a_row_is_added_up(page, stack, digit_model, test_digits, tmp_path):
    row = tmp_path / "row.jpg"
    row.write_bytes(encode(photo_of_row(test_digits[0][:10], np.random.default_rng(4)), "JPEG"))
    page.select_option("#sum-method", "digit-model")
    page.set_input_files("#sum-row-file", str(row))
    page.wait_for_selector("#sum-result:not([hidden])")
    digits = [int(cell) for cell in page.locator("#sum-digits td").all_text_contents()]
    assert len(digits) == 10
    assert page.text_content("#sum-answer") == str(sum(digits))
    assert page.locator("#sum-images img").count() == 10


def test_an_upload_that_is_not_an_image_shows_the_service_s_message(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#digit-file", str(notes))
    page.wait_for_selector("#digit-error:not([hidden])")
    assert "not an image" in page.text_content("#digit-error")


def test_a_job_is_seen_running_then_finished_with_its_plots(page, stack, mnist_path):
    job = stack.submit("mlp", hidden_units=[16], epochs=4, train_limit=3000, test_limit=300)
    row = f"#jobs-table tr[data-job='{job['id']}']"
    page.wait_for_selector(f"{row} .progress-text:has-text('epoch')", timeout=90_000)
    page.wait_for_selector(f"{row} .status-succeeded", timeout=120_000)
    page.click(f"{row} a:has-text('history')")
    page.wait_for_function("document.getElementById('plot-image').naturalWidth > 300")


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
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_with_an_api_token_the_page_asks_for_it_and_sends_it(browser, tmp_path):
    from tests.conftest import FAULTS_DB
    from tests.stack import ServiceStack

    guarded = ServiceStack(FAULTS_DB, tmp_path, API_TOKEN="page-token-of-16-chars")
    guarded.start(worker=False)
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(guarded.base_url + "/")
        page.select_option("#preset-name", "cnn")
        page.click("#preset-form button")
        page.wait_for_selector("#preset-status:has-text('token')")
        assert page.locator("#token-box").get_attribute("open") is not None
        page.fill("#token", "page-token-of-16-chars")
        page.dispatch_event("#token", "change")
        page.click("#preset-form button")
        page.wait_for_selector("#preset-status:has-text('queued')")
        assert guarded.client.get("/jobs").json()["total"] == 1
        context.close()
    finally:
        guarded.stop()
