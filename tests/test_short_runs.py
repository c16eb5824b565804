"""Short runs give sane models: what a model answers at inference, through the job's own test
and through the API, is as good as what it did in training. (Batch normalization's moving
averages once held mostly their initial values after a few dozen steps: a cnn of 1 epoch read
13% of the test digits while its training batches read far more; then, in 36 steps of 128
images, dropped out at 0.4, it read 57%.)"""

import numpy as np
import pytest

from tests.photo_like import encode


# The targets: a cnn of 1 epoch on 5,000 images >= 95%, an mlp on 2,000 >= 85%.
@pytest.mark.parametrize(
    ("kind", "train_limit", "target"), [("cnn", 5000, 0.95), ("mlp", 2000, 0.85)]
)
def test_after_one_epoch_inference_is_as_good_as_training(
    stack, test_digits, kind, train_limit, target
):
    # The whole test set: its first half is harder (a cnn of this kind: 94.9% of the first
    # 2,000 digits, 97.8% of the last 5,000).
    job = stack.submit(kind, epochs=1, train_limit=train_limit, seed=0)
    finished = stack.wait_until_finished(job["id"], timeout=240)
    assert finished["status"] == "succeeded", finished["error"]
    (epoch,) = stack.client.get(f"/jobs/{job['id']}/history").json()
    accuracy = finished["result"]["test_accuracy"]
    # Training batches are distorted and dropped out: inference should do at least as well.
    assert accuracy >= epoch["accuracy"] - 0.02
    assert accuracy >= target
    images, labels = test_digits  # MNIST test digits 3000..3099
    files = [("file", (f"{i}.png", encode(image, "PNG"))) for i, image in enumerate(images)]
    read = []
    for start in range(0, len(files), 50):  # within MAX_IMAGES_PER_REQUEST
        response = stack.client.post(
            "/predict/digit",
            files=files[start : start + 50],
            params={"model": finished["result"]["model_id"]},
        )
        assert response.status_code == 200, response.text
        read += [prediction["digit"] for prediction in response.json()["predictions"]]
    # 100 uploads: within sampling noise (3 standard errors) of the job's own figure.
    margin = 3 * np.sqrt(accuracy * (1 - accuracy) / len(labels))
    assert np.mean(np.array(read) == labels) >= accuracy - margin
