"""The serving path's faster ways give what the slower ones give: LiteRT the model's own
outputs, OpenCV Pillow's pixels, the percentile and ink mask numpy's."""

import io
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from service.predict import runtime
from service.predict.decode import UnsupportedImage, _plain_gray_png, decode_upload
from training import digit_images
from training.calculator import build_calculator
from training.cnn import build_mnist_cnn
from training.mlp import build_mlp
from training.svhn_cnn import build_svhn_cnn

LIMITS = (10**7, 10**8)  # bytes, pixels


@pytest.fixture(scope="module")
def mnist_digits(mnist_path) -> np.ndarray:
    with np.load(mnist_path) as data:
        return data["x_test"][:64].astype(np.float32)


def _graph_outputs(model, inputs: np.ndarray) -> np.ndarray:
    return model(inputs, training=False).numpy()


@pytest.mark.parametrize(
    "build", [build_mnist_cnn, lambda: build_mlp([64, 32], "lecun")], ids=["cnn", "mlp"]
)
def test_litert_answers_as_the_keras_model_at_every_batch_size(build, mnist_digits):
    model = build()
    predict = runtime.compiled_predict(model)
    assert predict.__qualname__.startswith("_lite_predict")  # LiteRT serves it
    for size in (1, 7, 64, 3, 1):  # sizes change: the interpreter's tensors are resized
        inputs = mnist_digits[:size]
        np.testing.assert_allclose(predict(inputs), _graph_outputs(model, inputs), atol=1e-5)


@pytest.mark.parametrize(
    "build", [build_mnist_cnn, lambda: build_mlp([64, 32], "lecun")], ids=["cnn", "mlp"]
)
def test_8_bit_weights_answer_each_image_as_alone_and_near_the_model(build, mnist_digits):
    model = build()
    predict = runtime.compiled_predict(model, quantized=True)
    assert predict.__qualname__.startswith("_lite_predict")
    together = predict(mnist_digits)
    alone = np.concatenate([predict(mnist_digits[i : i + 1]) for i in range(len(mnist_digits))])
    np.testing.assert_array_equal(alone, together)  # no image's answer depends on the others
    moved = np.abs(together - _graph_outputs(model, mnist_digits))
    assert 1e-6 < moved.max() <= runtime.QUANTIZED_TOLERANCE  # 8-bit, and close


def test_without_8_bit_weights_float_litert_serves(monkeypatch, mnist_digits):
    model = build_mnist_cnn()
    monkeypatch.setattr(runtime, "QUANTIZED_TOLERANCE", -1.0)  # no 8-bit model passes
    tried, lite_predict = [], runtime._lite_predict

    def recorded(*args, quantized):
        served = lite_predict(*args, quantized=quantized)
        tried.append((quantized, served is not None))
        return served

    monkeypatch.setattr(runtime, "_lite_predict", lambda *args, **kw: recorded(*args, **kw))
    predict = runtime.compiled_predict(model, quantized=True)
    assert tried == [(True, False), (False, True)]  # 8-bit refused, then float32 served
    assert predict.__qualname__.startswith("_lite_predict")
    np.testing.assert_allclose(
        predict(mnist_digits[:5]), _graph_outputs(model, mnist_digits[:5]), atol=1e-5
    )


def test_litert_serves_svhn_inputs_and_the_calculator_stays_on_its_graph(rng):
    svhn = build_svhn_cnn()
    inputs = rng.uniform(0, 255, (5, *svhn.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(
        runtime.compiled_predict(svhn)(inputs), _graph_outputs(svhn, inputs), atol=1e-5
    )
    calculator = build_calculator()
    outputs = runtime.compiled_predict(calculator)(np.zeros((2, 10, 28, 28), np.float32))
    assert {"digits", "cumulative", "sum"} <= set(outputs)  # several outputs: the graph


def test_without_litert_or_with_wrong_outputs_the_graph_serves(monkeypatch, mnist_digits):
    model = build_mnist_cnn()
    monkeypatch.setattr(runtime, "_interpreter_class", lambda: None)
    assert runtime.compiled_predict(model).__qualname__.endswith("graph_predict")

    class NaNInterpreter:  # a runtime that gives garbage is never served
        def __init__(self, *args, **kwargs) -> None:
            from ai_edge_litert.interpreter import Interpreter

            self._real = Interpreter(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._real, name)

        def get_tensor(self, index):
            return self._real.get_tensor(index) * np.nan

    monkeypatch.setattr(runtime, "_interpreter_class", lambda: NaNInterpreter)
    predict = runtime.compiled_predict(model)
    assert predict.__qualname__.endswith("graph_predict")
    np.testing.assert_allclose(predict(mnist_digits[:3]), _graph_outputs(model, mnist_digits[:3]))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _png(image: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _pillow_gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def test_gray_pngs_decode_to_pillows_pixels(mnist_digits, rng):
    images = [mnist_digits[i].astype(np.uint8) for i in range(20)]
    images.append(rng.integers(0, 256, (37, 91), dtype=np.uint8))  # odd sizes, every level
    for image in images:
        for data in (_png(image), _png(image, optimize=True), _png(image, compress_level=0)):
            assert _plain_gray_png(data, LIMITS[1]) is not None
            np.testing.assert_array_equal(decode_upload(data, "d.png", *LIMITS), image)
            np.testing.assert_array_equal(decode_upload(data, "d.png", *LIMITS), _pillow_gray(data))


def test_other_pngs_take_pillows_path(mnist_digits):
    digit = mnist_digits[0].astype(np.uint8)
    rgba = np.dstack([digit, digit, digit, 255 - digit])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: only Pillow's path turns it upright
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG", exif=exif)
    wide = np.zeros((20, 30), np.uint8)
    wide[5:15, 5:25] = 255
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'  # noqa: E501
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    xmp_png = _png(wide, pnginfo=info)
    still, frame = np.full((8, 8), 10, np.uint8), np.full((8, 8), 200, np.uint8)
    animated = io.BytesIO()  # a still image that is not the animation's first frame
    Image.fromarray(still).save(
        animated, format="PNG", save_all=True, append_images=[Image.fromarray(frame)],
        default_image=True,
    )  # fmt: skip
    for data in (_png(rgba), _png(np.dstack([digit] * 3)), buffer.getvalue(), xmp_png):
        assert _plain_gray_png(data, LIMITS[1]) is None
    assert _plain_gray_png(animated.getvalue(), LIMITS[1]) is None
    upright = decode_upload(buffer.getvalue(), "rotated.png", *LIMITS)
    np.testing.assert_array_equal(upright, np.rot90(digit, -1))
    assert decode_upload(xmp_png, "xmp.png", *LIMITS).shape == (30, 20)  # turned upright
    np.testing.assert_array_equal(decode_upload(animated.getvalue(), "a.png", *LIMITS), still)


def test_broken_gray_pngs_are_refused_as_before(mnist_digits):
    data = _png(mnist_digits[1].astype(np.uint8))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    # An optional chunk with a wrong CRC or length: libpng only warns, Pillow refuses.
    gamma = b"gAMA" + (45455).to_bytes(4, "big")
    chunk = len(gamma[4:]).to_bytes(4, "big") + gamma + zlib.crc32(gamma).to_bytes(4, "big")
    bad_crc = chunk[:-1] + bytes([chunk[-1] ^ 0xFF])
    short = (3).to_bytes(4, "big") + gamma[:7] + zlib.crc32(gamma[:7]).to_bytes(4, "big")
    after_ihdr = 8 + 25
    with_chunk = [data[:after_ihdr] + extra + data[after_ihdr:] for extra in (bad_crc, short)]
    good = data[:after_ihdr] + chunk + data[after_ihdr:]
    assert decode_upload(good, "gamma.png", *LIMITS).shape == (28, 28)
    for broken in (data[: len(data) // 2], bytes(flipped), data[:30], *with_chunk):
        with pytest.raises(UnsupportedImage):
            decode_upload(broken, "broken.png", *LIMITS)
    with pytest.raises(Exception, match="pixels"):  # the limit still holds
        decode_upload(data, "d.png", LIMITS[0], 100)


def test_the_percentile_is_numpys(rng):
    for size in (1, 2, 3, 20, 21, 999, 4096):
        values = rng.random(size).astype(np.float32)
        values[: size // 3] = values[-1]  # ties
        for q in (0, 5, 50, 95, 99.5, 100):
            assert digit_images._percentile(values, q) == float(np.percentile(values, q))


def test_the_ink_mask_keeps_the_regions_that_reach_the_high_threshold(rng):
    """Against the formulation it replaced: each region's peak, by np.maximum.at."""
    for _ in range(30):
        ink = cv2.GaussianBlur(rng.random((40, 50)).astype(np.float32), (0, 0), 2)
        ink = (ink - ink.min()) / (ink.max() - ink.min())
        peak = float(ink.max())
        low, high = (
            max(digit_images.MIN_CONTRAST, digit_images.LOW * peak),
            digit_images.HIGH * peak,
        )
        count, labels, _, _ = cv2.connectedComponentsWithStats(
            (ink > low).astype(np.uint8), connectivity=8
        )
        peaks = np.zeros(count, np.float32)
        np.maximum.at(peaks, labels.ravel(), ink.ravel())
        strong = peaks >= high
        strong[0] = False
        expected = strong[labels].astype(np.uint8) * 255
        np.testing.assert_array_equal(digit_images._ink_mask(ink), expected)
