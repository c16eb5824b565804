"""Arrays prepared as a batch come out as `to_mnist` (through `prepare_images`) makes each one,
and the routes that read them as a batch answer malformed requests as they did one by one."""

import json
import sys

import cv2
import numpy as np
import pytest

from service.api.json_body import loads_json
from service.predict import instances as instances_module
from service.predict.instances import InvalidInstance, instances_to_array
from service.predict.reading import Upload
from service.predict.tensors import InvalidTensor, Tensor, tensor_instances
from service.settings import Settings
from training import batch_preparation, digit_images
from training.batch_preparation import prepare_batch
from training.data.prepared import prepare_images
from training.digit_images import _percentile


@pytest.fixture(scope="module")
def digits(mnist_path) -> np.ndarray:
    with np.load(mnist_path) as data:
        return data["x_test"][:2000]


@pytest.fixture
def per_image(monkeypatch) -> list[int]:
    """How many images, call by call, the batch left to `prepare_images`."""
    calls: list[int] = []

    def counted(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return prepare_images(images)

    monkeypatch.setattr(batch_preparation, "prepare_images", counted)
    return calls


def assert_prepared_as_each(images: np.ndarray) -> None:
    """`prepare_batch` gives, image by image, what `prepare_images` gives (to the bit: within
    the 1/255 of a grey level the preparation tests allow elsewhere, and closer)."""
    expected = np.stack([prepare_images(image[np.newaxis])[0] for image in images])
    batch = prepare_batch(images)
    assert batch.shape == expected.shape and batch.dtype == np.float32
    for index, (got, want) in enumerate(zip(batch, expected, strict=True)):
        np.testing.assert_array_equal(got, want, err_msg=f"image {index}")


def test_mnist_test_digits_come_out_as_each_one_prepared(digits, per_image):
    assert_prepared_as_each(digits)
    # All went the batch's way (none is without ink), so the comparison is of the batch's way.
    assert sum(per_image) == 0


def test_digits_in_every_form_come_out_as_each_one_prepared(digits, per_image):
    rng = np.random.default_rng(7)
    sample = digits[:64]
    shifted = np.stack(
        [np.roll(d, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), (0, 1)) for d in sample]
    )
    noisy = np.clip(sample + rng.normal(0, 25, sample.shape), 0, 255).astype(np.uint8)
    specks = sample.copy()  # a speck and a mark beside the digit: several regions
    specks[np.arange(64), rng.integers(0, 28, 64), rng.integers(0, 28, 64)] = 255
    specks[::2, 1:3, 1:4] = 180
    small = np.stack([_small(d) for d in sample[:16]])
    cases = [
        sample,
        255 - sample,  # dark ink on white
        shifted,  # off-centre, some cut by the border
        noisy,
        specks,
        (sample * 0.2).astype(np.uint8),  # faint
        (sample * 0.13).astype(np.uint8),  # near the least contrast that is ink
        small,  # boxes under 20 pixels
        cv2.erode(sample[:16].reshape(-1, 28), np.ones((2, 2), np.uint8)).reshape(-1, 28, 28),
        cv2.dilate(sample[:16].reshape(-1, 28), np.ones((3, 3), np.uint8)).reshape(-1, 28, 28),
        rng.integers(0, 256, (16, 28, 28), dtype=np.uint8),  # noise
        np.zeros((2, 28, 28), np.uint8),  # blank
        np.full((2, 28, 28), 255, np.uint8),
        np.full((2, 28, 28), 128, np.uint8),
        _one_pixel(),
        _two_sided(rng),
        _edges(sample[:8]),
    ]
    for images in cases:
        assert_prepared_as_each(images)
    assert_prepared_as_each(np.concatenate(cases))  # all in one batch, past one chunk


def _small(digit: np.ndarray) -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[10:18, 12:20] = cv2.resize(digit, (8, 8), interpolation=cv2.INTER_AREA)
    return image


def _two_sided(rng: np.random.Generator) -> np.ndarray:
    """Grey images with dark and light marks, in counts about the 1% of pixels that decide
    which side is ink."""
    images = np.full((24, 28, 28), 128, np.uint8)
    for index, image in enumerate(images):
        cells = rng.permutation(26 * 26)[: 4 + index + 30]
        rows, columns = cells // 26 + 1, cells % 26 + 1
        image[rows[: 4 + index], columns[: 4 + index]] = 0
        image[rows[4 + index :], columns[4 + index :]] = 200
    return images


def _edges(digits: np.ndarray) -> np.ndarray:
    """Digits beside a paper edge (a region touching the border, left out of the digit's
    box), and ink from the top row to the bottom one, where stacked images meet."""
    images = digits.copy()
    images[::2, :, :3] = 255
    images[1::2, :, 25:27] = 230
    return images


def _one_pixel() -> np.ndarray:
    images = np.zeros((3, 28, 28), np.uint8)
    images[0, 14, 14] = 255
    images[1, 0, 0] = 255
    images[2, 3:5, 20:27] = 200
    return images


def test_other_sizes_and_empty_batches_go_through_prepare_images(digits, per_image):
    large = np.stack([cv2.resize(d, (40, 40)) for d in digits[:4]])
    np.testing.assert_array_equal(prepare_batch(large), prepare_images(large))
    assert per_image == [4]
    assert prepare_batch(np.zeros((0, 28, 28), np.uint8)).shape == (0, 28, 28)


def _meeting_edges() -> np.ndarray:
    """A faint and a strong mark on one image's bottom row, joined through the next image's
    top row: one region only if images were labelled touching."""
    images = np.zeros((2, 28, 28), np.uint8)
    images[0, 10:14, 10:16] = 255  # the digit
    images[0, 24:, 2:6] = 60  # faint: not ink beside the digit's 255
    images[0, 24:, 20:24] = 255
    images[1, :3, 2:24] = 255
    images[1, 10:20, 12:14] = 255
    return images


def test_ink_regions_and_boxes_are_each_images_own(digits):
    images = np.concatenate([digits[:64], _meeting_edges(), _edges(digits[:6])])
    ink = batch_preparation._enlarged(batch_preparation._ink_strength(images))
    peak = ink.reshape(len(ink), -1).max(axis=1)
    parts, boxes = batch_preparation._ink_parts(ink, peak)
    for index, image in enumerate(images):
        own_ink, mask, _ = digit_images._ink_of(image)
        np.testing.assert_array_equal(ink[index], own_ink)
        np.testing.assert_array_equal(parts[index], mask > 0, err_msg=f"image {index}")
        assert boxes[index].tolist() == list(digit_images._digit_box(mask)), index


def test_pen_radii_are_stroke_widths_in_each_box():
    rng = np.random.default_rng(5)
    strokes = np.zeros((48, 56, 56), np.float32)
    boxes = np.zeros((48, 4), np.int64)
    for index in range(48):
        thickness = int(rng.integers(1, 12))
        strokes[index] = cv2.GaussianBlur(
            (rng.random((56, 56)) < 0.02).astype(np.float32), (0, 0), thickness / 3
        )
        strokes[index] *= 255 / max(strokes[index].max(), 1e-6)
        x, y = rng.integers(0, 20, 2)
        boxes[index] = [x, y, rng.integers(20, 56 - x), rng.integers(20, 56 - y)]
    window = batch_preparation._windows(boxes)
    radii = batch_preparation._pen_radii(strokes, window, boxes)
    for index, (x, y, width, height) in enumerate(boxes.tolist()):
        crop = strokes[index, y : y + height, x : x + width]
        found = digit_images.stroke_width((crop > 127).astype(np.uint8))
        scale = digit_images.DIGIT_BOX / max(crop.shape)  # as `_normalized_strokes` has it
        low, high = (limit / scale for limit in digit_images.MNIST_STROKE_RANGE)
        assert radii[index] == round((min(max(found, low), high) - found) / 2), index
    assert len(set(radii.tolist())) > 2  # thickened, thinned and kept


def test_the_percentiles_are_digit_images_own():
    rng = np.random.default_rng(3)
    values = rng.random((40, 9, 9)).astype(np.float32)
    values[:, ::2] = values[:, :1]  # ties
    chosen = rng.random((40, 9, 9)) < rng.random((40, 1, 1))
    chosen[0] = False  # none: 1.0, as `_strokes` takes it
    chosen[1] = False
    chosen[1, 4, 4] = True  # one
    found = batch_preparation._percentiles(values, chosen, 95)
    for index in range(len(values)):
        picked = values[index][chosen[index]]
        expected = _percentile(picked, 95) if picked.size else 1.0
        assert found[index] == expected, index


def test_a_centre_of_mass_on_a_float32_rounding_boundary_is_opencvs(monkeypatch):
    canvases = np.zeros((3, 28, 28), np.float32)
    canvases[:2, 10, 10] = 2**22 + 1
    canvases[:2, 10, 11] = 2**22 - 1  # x: 10.5 - 2**-23, a shift of 3 + 2**-23: halfway
    canvases[0, 10, 11] = 2**22 + 1  # between float32's 3 and the next; x 10.5: shift 3
    asked = []
    moments = cv2.moments
    monkeypatch.setattr(cv2, "moments", lambda canvas: asked.append(canvas) or moments(canvas))
    shift, mass = batch_preparation._mass_shifts(canvases)
    assert mass.tolist() == [True, True, False] and len(asked) == 1  # OpenCV's, for one
    for index in range(2):
        found = moments(canvases[index])
        center = np.array([found["m10"], found["m01"]]) / found["m00"]
        assert shift[index].tolist() == np.float32(13.5 - center).tolist()
    assert shift[0].tolist() == [3.0, 3.5]


SETTINGS = Settings(_env_file=None)


def test_instances_are_prepared_together_as_each_one_was(digits, monkeypatch):
    images = digits[:40]
    rows = images.tolist()
    np.testing.assert_array_equal(instances_to_array(rows, False, SETTINGS), prepare_images(images))
    sequences = images.reshape(4, 10, 28, 28).tolist()
    expected = prepare_images(images).reshape(4, 10, 28, 28)
    np.testing.assert_array_equal(instances_to_array(sequences, True, SETTINGS), expected)
    # Numbers as JSON gives them (floats, in float32 the same as the integers they round to).
    floats = np.minimum(images[:3] + 0.25, 255).tolist()
    np.testing.assert_array_equal(
        instances_to_array(floats, False, SETTINGS), prepare_images(images[:3])
    )


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (lambda rows: rows.__setitem__(3, rows[3][:27]), "instances[3] has shape 27x28"),
        (lambda rows: rows.__setitem__(2, "x"), "instances[2] is not an array of numbers"),
        (lambda rows: rows[5][0].__setitem__(0, float("nan")), "instances[5] holds NaN"),
        (lambda rows: rows.__setitem__(4, np.full((28, 28), 0.5).tolist()), "instances[4] has no"),
        (lambda rows: rows[1][2].__setitem__(3, 300), "instances[1] holds values from 0 to 300"),
        (lambda rows: rows.__setitem__(6, [[200] * 28] * 28), None),  # well formed
    ],
)
def test_a_wrong_instance_among_many_is_named_as_before(digits, spoil, words):
    rows = digits[:8].tolist()
    spoil(rows)
    rows[7][0][0] = float("inf")  # a later error: the first one is named
    with pytest.raises(InvalidInstance) as error:
        instances_to_array(rows, False, SETTINGS)
    assert (words or "instances[7] holds NaN or infinite") in str(error.value)


def test_a_wrong_calculator_instance_is_named_as_before(digits):
    rows = digits[:20].reshape(2, 10, 28, 28).tolist()
    rows[1][4] = np.full((28, 28), 1).tolist()
    with pytest.raises(InvalidInstance, match=r"instances\[1\]\[4\] has no value above 1"):
        instances_to_array(rows, True, SETTINGS)


def test_requests_with_image_files_are_read_instance_by_instance(digits):
    rows = digits[:2].tolist()
    upload = Upload("digit.png", b"not read here")
    for instances, shape in [([rows[0], upload], (28, 28)), ([[upload] * 10], (10, 28, 28))]:
        assert instances_module._arrays(instances, shape) is None
    assert instances_module._arrays(rows, (28, 28)).shape == (2, 28, 28)


def _tensor(data, shape=(2, 28, 28), datatype="UINT8") -> Tensor:
    return Tensor("image", datatype, shape, data)


def test_tensors_flat_or_nested_read_as_before(digits):
    images = digits[:2]
    for data in (images.ravel().tolist(), images.tolist(), images.reshape(2, -1).tolist()):
        found = tensor_instances(_tensor(data))
        np.testing.assert_array_equal(np.stack(found), images.astype(np.float64))
    flat = images.ravel().tolist()
    for spoil, words in [
        (lambda d: d.__setitem__(100, True), "its value 100 is a boolean"),
        (lambda d: d.__setitem__(7, None), "its value 7 is null"),
        (lambda d: d.__setitem__(9, [1]), "mixes lists and values"),
        (lambda d: d.pop(), "has 1567 values; its shape [2, 28, 28] holds 1568"),
        (lambda d: d.__setitem__(3, 2.5), "not UINT8"),
    ]:
        data = list(flat)
        spoil(data)
        with pytest.raises(InvalidTensor, match=words.replace("[", r"\[").replace("]", r"\]")):
            tensor_instances(_tensor(data))


BODIES = [
    b'{"instances": [[1, 2.5, -0.0, 1e400, 12345678901234567890123]]}',
    b'{"a": 1, "a": 2, "b": [true, false, null], "c": "\\u00e9\\ud83d\\ude00"}',
    b"[NaN, Infinity, -Infinity]",
    b'\xef\xbb\xbf{"bom": 1}',
    '{"utf16": 1}'.encode("utf-16"),
    b'"\\ud800"',
    b"[" * 600 + b"]" * 600,
    b' \t\n{"x": 0.1}\r\n',
    b"",
    b"{",
    b'{"a": 1,}',
    b"[1, 2] 3",
    b'"\x01"',
    b"01",
    b"\xff",
    b'{"a": .5}',
    b"1" * 5000,
]


def _outcome(parse, body: bytes):
    try:
        return ("ok", repr(parse(body)))
    except Exception as error:  # the same type and words as json.loads raises
        return ("error", type(error), str(error))


@pytest.mark.parametrize("body", BODIES)
def test_json_bodies_read_as_json_loads_reads_them(body):
    assert _outcome(loads_json, body) == _outcome(json.loads, body)


def test_json_bodies_with_random_faults_read_as_json_loads_reads_them(digits):
    rng = np.random.default_rng(11)
    body = json.dumps(
        {"instances": digits[:2].tolist(), "x": [0.1, -2e-5, "s\u00e9", None, True]}
    ).encode()
    alphabet = b'{}[],:"\\ -+.eE0123456789aefilnrstuNI\x00\xff\xc3'
    for _ in range(300):
        spoiled = bytearray(body)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(spoiled)))
            action = rng.integers(0, 3)
            if action == 0:
                del spoiled[at]
            elif action == 1:
                spoiled.insert(at, alphabet[int(rng.integers(0, len(alphabet)))])
            else:
                spoiled[at] = alphabet[int(rng.integers(0, len(alphabet)))]
        assert _outcome(loads_json, bytes(spoiled)) == _outcome(json.loads, bytes(spoiled))


def test_a_lower_integer_digit_limit_is_kept_as_json_loads_keeps_it(monkeypatch):
    """Python's limit on an integer's digits (PYTHONINTMAXSTRDIGITS), which pydantic-core's
    parser does not read: below its own 4,300, a longer integer is refused as before."""
    body = b"[" + b"7" * 1000 + b"]"
    assert loads_json(body) == json.loads(body)  # the default limit (4,300) reads it
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        with pytest.raises(ValueError, match="640 digits"):
            loads_json(body)
    finally:
        sys.set_int_max_str_digits(previous)
