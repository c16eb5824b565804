"""The MNIST calculator: sequences, the model's outputs, learning, and a job through the API."""

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


@pytest.mark.parametrize("digit_head", [False, True])
def test_outputs_are_the_sum_running_sums_and_optionally_digits(digit_head):
    model = build_calculator(encoder_units=8, recurrent_units=8, digit_head=digit_head)
    outputs = model(np.zeros((2, 10, 28, 28), dtype="float32"))
    assert set(outputs) == (
        {"sum", "cumulative", "digits"} if digit_head else {"sum", "cumulative"}
    )
    np.testing.assert_allclose(outputs["sum"][:, 0], outputs["cumulative"][:, -1])


def test_with_digit_labels_it_reads_digits_and_beats_guessing_the_mean_sum(mnist_path):
    train, test = load_mnist(mnist_path)
    result = train_calculator(
        digit_labels=True, epochs=2, train_limit=20000, test_limit=1000, seed=0,
        mnist_path=mnist_path,
    )  # fmt: skip
    assert result["test_digit_accuracy"] > 0.9
    test_sums = consecutive_sequences(test.head(1000)).sums
    guess = random_sequences(train.head(20000), 2000, np.random.default_rng(0)).sums.mean()
    assert result["test_sum_mae"] < np.mean(np.abs(test_sums - guess))


def test_calculator_job_stores_a_model_that_reloads_in_both_formats(stack, mnist_path):
    job = stack.submit(
        "calculator", epochs=1, train_limit=300, test_limit=100, encoder_units=8,
        recurrent_units=8, seed=1,
    )  # fmt: skip
    finished = stack.wait_until_finished(job["id"], timeout=180)
    assert finished["status"] == "succeeded", finished["error"]
    result = finished["result"]
    assert result["test_sequences"] == 10
    assert {"test_sum_mae", "test_exact_sum_accuracy"} <= set(result)
    history = stack.client.get(f"/jobs/{job['id']}/history").json()
    assert {"sum_mae", "val_sum_mae", "sum_exact_sum_accuracy"} <= set(history[0])

    _, test = load_mnist(mnist_path)
    sequences = consecutive_sequences(test.head(100)).images
    predictions = []
    for model_format in ("keras", "h5"):
        response = stack.client.get(
            f"/models/{result['model_id']}/download", params={"format": model_format}
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"model.{model_format}"
            path.write_bytes(response.content)
            predictions.append(keras.saving.load_model(path).predict(sequences, verbose=0))
    np.testing.assert_allclose(predictions[0]["sum"], predictions[1]["sum"], rtol=1e-5)
    mae = np.mean(
        np.abs(predictions[0]["sum"].ravel() - consecutive_sequences(test.head(100)).sums)
    )
    assert mae == pytest.approx(result["test_sum_mae"], rel=1e-4)
