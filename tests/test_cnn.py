"""The MNIST CNN: architecture, inference without augmentation, and a job through the API."""

import numpy as np

from training.batch_sizes import default_batch_size, fit_examples
from training.cnn import build_mnist_cnn
from training.data.mnist import load_mnist


def test_augmentation_is_off_at_inference(mnist_path):
    _, test = load_mnist(mnist_path)
    model = build_mnist_cnn(conv_filters=[4, 8], dense_units=8, augment=True)
    images = test.images[:16].astype("float32")
    np.testing.assert_array_equal(
        model.predict(images, verbose=0), model.predict(images, verbose=0)
    )


def test_each_block_halves_the_image():
    model = build_mnist_cnn(conv_filters=[4, 8, 16, 32])
    assert model.get_layer("pool_4").output.shape[1:3] == (1, 1)
    assert model.output_shape == (None, 10)


def test_cnn_job_trains_and_stores_the_model(stack):
    job = stack.submit(
        "cnn", conv_filters=[8, 16], dense_units=16, epochs=1, train_limit=512, test_limit=200,
        seed=4,
    )  # fmt: skip
    finished = stack.wait_until_finished(job["id"], timeout=180)
    assert finished["status"] == "succeeded", finished["error"]
    result = finished["result"]
    assert np.sum(result["confusion_matrix"]) == 200
    assert stack.client.get(f"/models/{result['model_id']}").json()["kind"] == "cnn"
    gradients = stack.client.get(f"/jobs/{job['id']}/gradients").json()
    layers = {entry["layer"] for entry in gradients[0]["layers"]}
    assert {"conv_1", "batch_norm_1", "conv_2", "dense", "digit"} <= layers
    history = stack.client.get(f"/jobs/{job['id']}/history").json()
    assert history[0]["learning_rate"] < finished["params"]["learning_rate"]  # cosine decay
    # No batch_size given: the 460 examples Keras keeps after the split make batches of 16.
    assert finished["params"]["batch_size"] is None
    assert result["batch_size_used"] == default_batch_size(fit_examples(512, 0.1)) == 16


def test_the_default_batch_size_is_the_largest_giving_enough_steps():
    for examples in (10, 460, 4500, 10800, 31999, 32000, 54000):
        batch_size = default_batch_size(examples)
        assert batch_size in (16, 32, 64, 128)
        assert batch_size == 16 or examples / batch_size >= 250
        assert batch_size == 128 or examples / (2 * batch_size) < 250
