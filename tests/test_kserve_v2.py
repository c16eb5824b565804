"""KServe v2 (the Open Inference Protocol) over REST, driven by its official client
(tritonclient): health, metadata, readiness, infer from arrays and from image files, the
calculator, and errors in the protocol's shape."""

from __future__ import annotations

import base64
import re
import uuid

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.api.access import Access, required_access
from service.api.routes import kserve_v2
from service.models.store import ModelStore
from tests.photo_like import encode

SEQUENCE = 10


@pytest.fixture(scope="module")
def triton_client(stack) -> triton.InferenceServerClient:
    """The protocol's official HTTP client; it takes the server's address without a scheme."""
    client = triton.InferenceServerClient(url=stack.base_url.removeprefix("http://"))
    yield client
    client.close()


def uploaded_probabilities(stack, images: np.ndarray, model: str) -> np.ndarray:
    """What POST /predict/digit answers for the images as PNG files."""
    parts = [("file", (f"{i}.png", encode(image, "PNG"), "image/png")) for i, image in
             enumerate(images)]  # fmt: skip
    response = stack.client.post("/predict/digit", files=parts, params={"model": model}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    return np.array([p["probabilities"] for p in body.get("predictions", [body])])


def infer(stack, model: str, body: dict):
    return stack.client.post(f"/v2/models/{model}/infer", json=body, timeout=60)


def png_b64(image: np.ndarray) -> str:
    return base64.b64encode(encode(image, "PNG")).decode()


def assert_protocol_error(response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}, response.text
    assert words in response.json()["error"], response.text


def test_server_health_and_metadata(stack, triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    metadata = triton_client.get_server_metadata()
    assert metadata == {
        "name": kserve_v2.SERVER_NAME,
        "version": stack.client.get("/openapi.json").json()["info"]["version"],
        "extensions": [],
    }


def test_model_metadata_and_readiness(stack, triton_client, digit_model, calculator_model):
    digit_id, calculator_id = digit_model["id"], calculator_model["id"]
    metadata = triton_client.get_model_metadata(digit_id)
    assert metadata["name"] == digit_id and metadata["versions"] == [digit_id]
    assert metadata["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 28, 28]},
        {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
    ]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert triton_client.get_model_metadata(digit_id, model_version=digit_id) == metadata

    newest = stack.client.get("/models", params={"kind": "calculator", "limit": 1}).json()
    by_kind = triton_client.get_model_metadata("calculator")
    assert by_kind["versions"] == [newest["items"][0]["id"]]
    assert by_kind["inputs"][0] == {"name": "images", "datatype": "FP32", "shape": [-1, 10, 28, 28]}
    assert [output["name"] for output in by_kind["outputs"]] == [
        "digits", "cumulative", "sum", "sum_distribution",
    ]  # fmt: skip

    assert triton_client.is_model_ready(digit_id)
    assert triton_client.is_model_ready("calculator")
    assert triton_client.is_model_ready(calculator_id, model_version=calculator_id)
    assert not triton_client.is_model_ready("nothing-here")
    assert_protocol_error(stack.client.get("/v2/models/nothing-here/ready"), 404, "nothing-here")
    assert_protocol_error(stack.client.get("/v2/models/nothing-here"), 404, "nothing-here")
    other_version = stack.client.get(f"/v2/models/{digit_id}/versions/{calculator_id}")
    assert_protocol_error(other_version, 404, "no version")
    with pytest.raises(InferenceServerException) as raised:
        triton_client.get_model_metadata("nothing-here")
    assert raised.value.status() == "404" and "nothing-here" in raised.value.message()


def test_infer_on_arrays_answers_as_the_same_images_uploaded(
    stack, triton_client, digit_model, test_digits
):
    images = test_digits[0][:8]
    expected = uploaded_probabilities(stack, images, digit_model["id"])
    image = triton.InferInput("image", list(images.shape), "UINT8")
    image.set_data_from_numpy(images, binary_data=False)
    requested = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = triton_client.infer(digit_model["id"], [image], outputs=requested, request_id="req-7")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)
    response = result.get_response()
    assert response["model_name"] == digit_model["id"]
    assert response["model_version"] == digit_model["id"]
    assert response["id"] == "req-7"
    # FP32, nested as its shape, with no outputs named (all of them: the one).
    nested = infer(stack, digit_model["id"], {"inputs": [
        {"name": "image", "shape": list(images.shape), "datatype": "FP32",
         "data": images.astype(float).tolist()},
    ]})  # fmt: skip
    assert nested.status_code == 200, nested.text
    (output,) = nested.json()["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [8, 10]
    assert output["datatype"] == "FP32" and "id" not in nested.json()
    np.testing.assert_allclose(np.reshape(output["data"], (8, 10)), expected, atol=1e-5)


def test_infer_on_png_files_as_bytes(stack, triton_client, digit_model, test_digits):
    images = test_digits[0][10:13]
    expected = uploaded_probabilities(stack, images, digit_model["id"])
    files = np.array([png_b64(image).encode() for image in images], dtype=np.object_)
    image_bytes = triton.InferInput("image_bytes", [len(images)], "BYTES")
    image_bytes.set_data_from_numpy(files, binary_data=False)
    result = triton_client.infer(digit_model["id"], [image_bytes])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)


def test_the_calculator_infers_from_arrays_and_files(
    stack, triton_client, calculator_model, test_digits
):
    images = test_digits[0][:20]
    sequences = images.reshape(2, SEQUENCE, 28, 28)
    served = stack.client.post(
        f"/v1/models/{calculator_model['id']}:predict", json={"instances": sequences.tolist()}
    ).json()["predictions"]
    arrays = triton.InferInput("images", list(sequences.shape), "UINT8")
    arrays.set_data_from_numpy(sequences, binary_data=False)
    result = triton_client.infer(calculator_model["id"], [arrays])
    for name in ("digits", "cumulative", "sum", "sum_distribution"):
        expected = np.array([prediction[name] for prediction in served])
        np.testing.assert_allclose(result.as_numpy(name), expected, atol=1e-4)
    # Outputs chosen by name: only those come back, in the order asked.
    chosen = infer(stack, calculator_model["id"], {
        "inputs": [{"name": "images", "shape": [2, 10, 28, 28], "datatype": "UINT8",
                    "data": sequences.reshape(-1).tolist()}],
        "outputs": [{"name": "sum"}, {"name": "digits"}],
    })  # fmt: skip
    assert chosen.status_code == 200, chosen.text
    outputs = chosen.json()["outputs"]
    assert [(o["name"], o["shape"]) for o in outputs] == [("sum", [2, 1]), ("digits", [2, 10, 10])]
    np.testing.assert_allclose(outputs[0]["data"], result.as_numpy("sum").reshape(-1), atol=1e-4)
    # Ten PNG files make one sequence, read as POST /predict/sum reads them.
    files = [("files", (f"{i}.png", encode(im, "PNG"), "image/png")) for i, im in
             enumerate(images[:SEQUENCE])]  # fmt: skip
    summed = stack.client.post("/predict/sum", files=files,
                               params={"model": calculator_model["id"]}, timeout=60)  # fmt: skip
    as_bytes = infer(stack, calculator_model["id"], {
        "inputs": [{"name": "image_bytes", "shape": [1, 10], "datatype": "BYTES",
                    "data": [png_b64(image) for image in images[:SEQUENCE]]}],
        "outputs": [{"name": "sum"}],
    })  # fmt: skip
    assert as_bytes.status_code == 200, as_bytes.text
    assert as_bytes.json()["outputs"][0]["data"][0] == pytest.approx(
        summed.json()["raw_sum"], abs=1e-4
    )


def digit_input(**changes) -> dict:
    tensor = {"name": "image", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 784}
    return {"inputs": [tensor | changes]}


NOT_AN_IMAGE = base64.b64encode(b"not an image").decode()


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (digit_input(shape=[1, 27, 28], data=[0] * 756), 422, "has shape [1, 27, 28]"),
        (digit_input(shape=[2, 28, 28]), 422, "has 784 values"),
        (digit_input(datatype="BYTES"), 422, "is BYTES; it takes numbers"),
        (digit_input(datatype="BOOL"), 422, "is BOOL"),
        (digit_input(data=[300] * 784), 422, "not UINT8"),
        (digit_input(data=["0"] * 784), 422, "is a string"),
        (digit_input(name="pixels"), 422, "no input 'pixels'"),
        (digit_input() | {"outputs": [{"name": "logits"}]}, 422, "no output 'logits'"),
        ({"inputs": []}, 422, "Invalid request"),
        ({"input": []}, 422, "inputs"),
        (digit_input(name="image_bytes", datatype="BYTES", shape=[1], data=["%%%"]), 422,
         "not valid base64"),
        (digit_input(name="image_bytes", datatype="BYTES", shape=[1], data=[NOT_AN_IMAGE]), 415,
         "not an image"),
        (digit_input(shape=[65, 28, 28], data=[0] * 784 * 65), 413, "MAX_IMAGES_PER_REQUEST"),
        (digit_input(data=[10**400] + [0] * 783), 422, "integer too large"),
        (digit_input(datatype="FP32", data=[300] + [255] * 783), 422, "from 255 to 300"),
        (digit_input(data=[[0] * 700, [0] * 84]), 422, "data has 2 items; dimension 0"),
        (digit_input(data=[[[0] * 28] * 26 + [[0] * 27, [0] * 29]]), 422,
         "data[0][26] has 27 items; dimension 2"),
    ],
)  # fmt: skip
def test_bad_requests_get_the_protocols_error(stack, digit_model, body, status, words):
    assert_protocol_error(infer(stack, digit_model["id"], body), status, words)


def test_errors_elsewhere_in_the_protocol_take_its_shape_and_the_api_keeps_its_own(
    stack, triton_client, digit_model, test_digits
):
    assert_protocol_error(infer(stack, "nothing-here", digit_input()), 404, "nothing-here")
    assert_protocol_error(stack.client.get("/v2/models/Not_A_Name"), 422, "pattern")
    too_long = stack.client.get(f"/v2/models/{digit_model['id']}/versions/{'1' * 129}")
    assert_protocol_error(too_long, 422, "128")
    assert_protocol_error(stack.client.get("/v2/nowhere"), 404, "No endpoint")
    assert_protocol_error(stack.client.delete("/v2"), 405, "not allowed")
    assert set(stack.client.get("/v1/models/nothing-here").json()) == {"code", "detail"}
    # The client's default, binary tensor data, is refused with what to do instead.
    image = triton.InferInput("image", [1, 28, 28], "UINT8")
    image.set_data_from_numpy(test_digits[0][:1])
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer(digit_model["id"], [image])
    # 400 where the bytes are no UTF-8, else 422 (JSON with data after it).
    assert raised.value.status() in ("400", "422")
    assert "binary_data=False" in raised.value.message()


def test_health_is_open_and_the_rest_reads_like_the_other_prediction_routes():
    """As tests/test_auth.py checks the other routers: the early check in the access
    middleware agrees with what each route is included with (service/main.py)."""
    for router, access in ((kserve_v2.health_router, Access.OPEN), (kserve_v2.router, Access.READ)):
        for route in router.routes:
            path = re.sub(r"\{[^}]+\}", "0" * 32, route.path)
            for method in route.methods:
                assert required_access(method, path) is access, (method, route.path)


def test_a_version_that_is_no_model_id_is_404_saying_what_versions_are(
    stack, triton_client, digit_model
):
    digit_id = digit_model["id"]
    with pytest.raises(InferenceServerException) as raised:
        triton_client.get_model_metadata(digit_id, model_version="1")
    assert raised.value.status() == "404", raised.value.message()
    assert "versions are model ids" in raised.value.message()
    assert not triton_client.is_model_ready(digit_id, model_version="1")
    refused = stack.client.post(f"/v2/models/{digit_id}/versions/1/infer", json=digit_input())
    assert_protocol_error(refused, 404, "no version '1'")


def test_images_scaled_to_0_1_are_refused_with_the_reason(stack, digit_model, calculator_model,
                                                          test_digits):  # fmt: skip
    scaled = test_digits[0][:2] / 255
    as_tensor = infer(stack, digit_model["id"], {"inputs": [
        {"name": "image", "shape": [2, 28, 28], "datatype": "FP32", "data": scaled.tolist()},
    ]})  # fmt: skip
    assert_protocol_error(as_tensor, 422, "image [0] has no value above 1")
    assert "scaled to 0..1" in as_tensor.json()["error"] and "0..255" in as_tensor.json()["error"]
    # A calculator's sequence: each of its 10 images is checked.
    sequence = test_digits[0][:10].astype(float)
    sequence[3] /= 255
    as_sequence = infer(stack, calculator_model["id"], {"inputs": [
        {"name": "images", "shape": [1, 10, 28, 28], "datatype": "FP64",
         "data": sequence.reshape(-1).tolist()},
    ]})  # fmt: skip
    assert_protocol_error(as_sequence, 422, "image [0][3] has no value above 1")


def test_a_calculator_row_counts_as_its_10_images(stack, calculator_model):
    """MAX_IMAGES_PER_REQUEST (64 on the session's stack) counts 28x28 images: 7 rows are 70."""
    rows = 7
    body = {"inputs": [{"name": "images", "shape": [rows, 10, 28, 28], "datatype": "UINT8",
                        "data": [0] * rows * 10 * 784}]}  # fmt: skip
    refused = infer(stack, calculator_model["id"], body)
    assert_protocol_error(refused, 413, f"carries {rows * SEQUENCE} images")


def test_a_model_that_does_not_load_is_not_ready_and_the_answer_keeps_why_to_the_log(stack):
    store = ModelStore(stack.redis, stack.log_dir / "artifacts")
    model_id = uuid.uuid4().hex
    folder = store.model_dir(model_id)
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"not a keras file")
    store.register(model_id, "mlp", "test", {}, {}, {"keras": "model.keras"})
    try:
        answer = stack.client.get(
            f"/v2/models/{model_id}/ready", headers={"X-Request-ID": "ready-check-7"}
        )
    finally:
        store.delete(model_id)
    assert_protocol_error(answer, 503, "could not be loaded; see the server's log, request id "
                                       "ready-check-7")  # fmt: skip
    assert str(folder) not in answer.text and "model.keras" not in answer.text
    assert "ready-check-7" in stack.api.log_tail(20_000)
