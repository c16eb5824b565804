"""The MNIST calculator: sequences, exact arithmetic on digit readings, learning from sums
alone or with labels, starting from a stored digit model, and a job through the API."""

import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

from training.calculator import (
    build_calculator,
    consecutive_sequences,
    random_sequences,
    train_calculator,
)
from training.data.mnist import load_mnist
from training.data.prepared import prepare_images
from training.data.sequences import read_sequences, sum_metrics
from training.progress import RecordingReporter


def test_test_sequences_are_the_test_set_in_consecutive_groups_of_ten(mnist_path):
    _, test = load_mnist(mnist_path)
    sequences = consecutive_sequences(test)
    assert sequences.images.shape == (1000, 10, 28, 28)
    np.testing.assert_array_equal(sequences.images[3, 7], test.images[37])
    assert sequences.sums[3] == test.labels[30:40].sum()
    np.testing.assert_array_equal(sequences.cumulative[3], np.cumsum(test.labels[30:40]))


def test_training_sequences_use_every_image_once_before_repeating(mnist_path):
    train, _ = load_mnist(mnist_path)
    subset = train.head(200)
    sequences = random_sequences(subset, 20, np.random.default_rng(0))
    assert sorted(sequences.digits.ravel()) == sorted(subset.labels)
    longer = random_sequences(subset, 30, np.random.default_rng(0))
    assert np.bincount(longer.digits.ravel()).sum() == 300


def test_sums_are_exact_arithmetic_on_the_digit_probabilities():
    model = build_calculator(conv_filters=[4], dense_units=8)
    images = np.random.default_rng(0).uniform(0, 255, (3, 10, 28, 28)).astype("float32")
    outputs = {name: np.asarray(value) for name, value in model(images, training=False).items()}
    digits = outputs["digits"]
    assert digits.shape == (3, 10, 10)
    expected = (digits * np.arange(10)).sum(axis=-1)  # each image's expected digit
    np.testing.assert_allclose(outputs["cumulative"], np.cumsum(expected, axis=1), rtol=1e-5)
    np.testing.assert_allclose(outputs["sum"][:, 0], outputs["cumulative"][:, -1])
    # The distribution of a sum of independent digits: the convolution of theirs (numpy's).
    for sequence, distribution in zip(digits, outputs["sum_distribution"], strict=True):
        reference = sequence[0]
        for position in sequence[1:]:
            reference = np.convolve(reference, position)
        np.testing.assert_allclose(distribution, reference, atol=1e-7)


def test_a_reading_is_the_most_likely_digit_at_each_position():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(10), size=(50, 10))
    reading = read_sequences(probabilities)
    np.testing.assert_array_equal(reading.digits, probabilities.argmax(axis=-1))
    np.testing.assert_array_equal(reading.confidences, probabilities.max(axis=-1))


def test_sum_metrics_count_what_a_misread_digit_costs():
    """Two sequences of ten 1s, truth; the second read with its 4th digit as a 7 (off by 6)."""
    truth = np.ones((2, 10), int)
    read = truth.copy()
    read[1, 3] = 7
    metrics = sum_metrics(np.eye(10)[read], truth)
    assert metrics["test_digit_accuracy"] == 19 / 20
    assert metrics["test_sum_mae"] == 6 / 2
    assert metrics["test_exact_sum_accuracy"] == 1 / 2
    # Running sums 4..10 of the second sequence are off by 6: 7 of 20 positions.
    assert metrics["test_cumulative_mae"] == 7 * 6 / 20
    assert metrics["test_exact_cumulative_accuracy"] == 13 / 20
    assert metrics["test_all_cumulative_exact"] == 1 / 2


def test_from_sums_alone_only_the_digit_classifier_learns(mnist_path, tmp_path):
    """The sums' likelihood trains the classifier and leaves the arithmetic exact. (Learning
    to read digits from sums takes ~1,000 steps: bench/accuracy.py measures it at the
    default epochs.)"""
    reporter = RecordingReporter()
    result = train_calculator(
        epochs=2, train_limit=3000, test_limit=100, conv_filters=[8], dense_units=16, seed=0,
        mnist_path=mnist_path, model_dir=tmp_path, progress=reporter,
    )  # fmt: skip
    losses = [entry["loss"] for entry in reporter.history]
    assert losses[1] < losses[0]
    model = keras.saving.load_model(tmp_path / "model.keras")
    kernel, recurrent = model.get_layer("accumulate").get_weights()
    np.testing.assert_array_equal(kernel[:, 0], np.arange(10))
    np.testing.assert_array_equal(recurrent, [[1.0]])
    assert result["epochs_run"] == 2


def test_from_a_stored_digit_model_its_sums_are_that_models_digits(mnist_path, tmp_path):
    train, test = load_mnist(mnist_path)
    digit_model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
         keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    digit_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    digit_model.fit(prepare_images(train.images[:5000]), train.labels[:5000], epochs=2, verbose=0)
    digit_model.save(tmp_path / "digits.keras")

    result = train_calculator(
        digit_model_path=tmp_path / "digits.keras", test_limit=500, mnist_path=mnist_path
    )
    assert result["epochs_run"] == 0  # kept as it is: nothing to train
    kept = digit_model.predict(prepare_images(test.images[:500]), verbose=0)
    expected = sum_metrics(kept.reshape(50, 10, 10), test.labels[:500].reshape(50, 10))
    for name, value in expected.items():
        assert result[name] == pytest.approx(value), name


def test_calculator_job_stores_a_model_that_reloads_in_both_formats(stack, mnist_path):
    job = stack.submit(
        "calculator", epochs=1, train_limit=300, test_limit=100, conv_filters=[8],
        dense_units=8, seed=1,
    )  # fmt: skip
    finished = stack.wait_until_finished(job["id"], timeout=180)
    assert finished["status"] == "succeeded", finished["error"]
    result = finished["result"]
    assert result["test_sequences"] == 10
    assert {"test_sum_mae", "test_exact_sum_accuracy", "test_all_cumulative_exact"} <= set(result)
    history = stack.client.get(f"/jobs/{job['id']}/history").json()
    assert {"sum_mae", "val_sum_mae", "sum_exact_sum_accuracy"} <= set(history[0])

    _, test = load_mnist(mnist_path)
    sequences = consecutive_sequences(test.head(100))
    prepared = prepare_images(sequences.images.reshape(-1, 28, 28)).reshape(-1, 10, 28, 28)
    predictions = []
    for model_format in ("keras", "h5"):
        response = stack.client.get(
            f"/models/{result['model_id']}/download", params={"format": model_format}
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"model.{model_format}"
            path.write_bytes(response.content)
            predictions.append(keras.saving.load_model(path).predict(prepared, verbose=0))
    np.testing.assert_allclose(predictions[0]["digits"], predictions[1]["digits"], rtol=1e-5)
    # The job's metrics are what the stored model answers for the prepared test sequences.
    metrics = sum_metrics(predictions[0]["digits"], sequences.digits)
    assert metrics["test_sum_mae"] == pytest.approx(result["test_sum_mae"])


def test_a_digit_model_reference_must_name_a_digit_model(stack, calculator_model):
    """Refused at submission (422) when the reference names no model or another kind."""
    for reference, words in (
        (calculator_model["id"], "a calculator starts from a digit model of kind cnn or mlp"),
        ("no-such-alias", "No model or alias named 'no-such-alias'"),
    ):
        response = stack.client.post(
            "/jobs", json={"kind": "calculator", "params": {"digit_model": reference}}
        )
        assert response.status_code == 422, response.text
        assert words in response.json()["detail"]
        assert response.json()["errors"][0]["loc"] == ["body", "params", "digit_model"]
