"""SVHN: the loader on real crops in the original .mat layout, and the course's CNN."""

import keras
import numpy as np
import pytest

from training.data.svhn import load_svhn
from training.svhn_cnn import build_svhn_cnn, split_validation

# Digit counts of the 50-image sample, from shared/data/README.md.
SAMPLE_DIGIT_COUNTS = [6, 4, 7, 4, 5, 6, 4, 4, 4, 6]


def test_loader_gives_images_first_and_digit_zero_as_zero(svhn_dir):
    train, test = load_svhn(svhn_dir, download=False)
    assert train.images.shape == (50, 32, 32, 3) and train.images.dtype == np.uint8
    assert np.bincount(train.labels, minlength=10).tolist() == SAMPLE_DIGIT_COUNTS
    assert test.labels.shape == (50,)


def test_loader_explains_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="SVHN_DIR"):
        load_svhn(tmp_path, download=False)


def test_the_network_is_exactly_the_course_topology():
    model = build_svhn_cnn()
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convolutions] == [9, 36, 49]
    assert all(layer.kernel_size == (3, 3) for layer in convolutions)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [layer.pool_size for layer in pools] == [(3, 3)] * 3
    # Every convolution is followed by its pooling, then flatten and the softmax.
    kinds = [type(layer).__name__ for layer in model.layers[2:]]
    assert kinds == ["Conv2D", "MaxPooling2D"] * 3 + ["Flatten", "Dense"]
    assert model.output_shape == (None, 10)


def test_validation_is_drawn_at_random_and_repeatably():
    images = np.arange(100).reshape(100, 1)
    labels = np.arange(100)
    (fit_x, _), (validation_x, validation_y) = split_validation(images, labels, 30, seed=5)
    assert len(validation_y) == 30 and len(fit_x) == 70
    assert set(fit_x.ravel()).isdisjoint(validation_x.ravel())
    assert validation_y.tolist() != list(range(30))  # not simply the first 30
    again = split_validation(images, labels, 30, seed=5)[1][1]
    assert again.tolist() == validation_y.tolist()
    with pytest.raises(ValueError, match="validation_size"):
        split_validation(images, labels, 100, seed=5)


def test_svhn_job_trains_with_early_stopping_and_stores_the_model(stack):
    job = stack.submit("svhn_cnn", validation_size=10, epochs=4, batch_size=8, seed=2)
    finished = stack.wait_until_finished(job["id"], timeout=120)
    assert finished["status"] == "succeeded", finished["error"]
    history = stack.client.get(f"/jobs/{job['id']}/history").json()
    assert 1 <= len(history) <= 4
    assert all("val_loss" in entry for entry in history)
    result = finished["result"]
    assert result["epochs_run"] == len(history)
    assert np.sum(result["confusion_matrix"]) == 50
    model = stack.client.get(f"/models/{result['model_id']}").json()
    assert model["kind"] == "svhn_cnn"


def test_svhn_validation_size_must_leave_training_images(client):
    response = client.post(
        "/jobs", json={"kind": "svhn_cnn", "params": {"train_limit": 100, "validation_size": 100}}
    )
    assert response.status_code == 422
    assert "validation_size" in response.json()["detail"]
