"""MLPs on real MNIST slices: repeatable with a seed, saved models reload, stats are right."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import training.activations  # registers "lecun" so saved models load
from training.activation_names import KERAS_HIDDEN_ACTIVATIONS
from training.callbacks import gradient_statistics
from training.data.mnist import load_mnist
from training.data.prepared import prepare_images
from training.keras_training import PROBE_SIZE
from training.mlp import build_mlp, train_mlp
from training.progress import RecordingReporter

SMALL = {"train_limit": 600, "test_limit": 200, "epochs": 2, "batch_size": 64}


def test_every_allowed_activation_name_is_one_keras_knows():
    for name in KERAS_HIDDEN_ACTIVATIONS:
        assert keras.activations.get(name) is not None


def test_mnist_loader_reads_the_keras_layout(mnist_path):
    train, test = load_mnist(mnist_path)
    assert train.images.shape == (60000, 28, 28) and test.labels.shape == (10000,)
    assert train.images.dtype == np.uint8
    assert set(np.unique(test.labels)) == set(range(10))


def test_mnist_loader_explains_a_wrong_file(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        load_mnist(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((3, 28, 28)))
    with pytest.raises(ValueError, match="lacks the arrays"):
        load_mnist(bad)


def test_same_seed_gives_the_same_run_on_cpu(mnist_path):
    runs = []
    for _ in range(2):
        reporter = RecordingReporter()
        result = train_mlp(
            hidden_units=[32], seed=7, mnist_path=mnist_path, progress=reporter, **SMALL
        )
        runs.append(
            (
                [{k: v for k, v in e.items() if k != "seconds"} for e in reporter.history],
                result["test_loss"],
            )
        )
    assert runs[0] == runs[1]


def test_depth_activation_and_first_activation_shape_the_network():
    model = build_mlp([16, 8, 4], activation="tanh", first_activation="lecun")
    hidden = [layer for layer in model.layers if layer.name.startswith("hidden_")]
    assert [layer.units for layer in hidden] == [16, 8, 4]
    assert hidden[0].activation is training.activations.lecun_tanh
    assert hidden[1].activation.__name__ == "tanh"


def test_saved_models_reload_in_both_formats_with_the_same_predictions(mnist_path, tmp_path):
    result = train_mlp(
        hidden_units=[16, 16],
        activation="lecun",
        l2=1e-4,
        seed=1,
        mnist_path=mnist_path,
        model_dir=tmp_path,
        **SMALL,
    )
    _, test = load_mnist(mnist_path)
    images = test.images[:50].astype("float32")
    native = keras.saving.load_model(tmp_path / result["files"]["keras"])
    legacy = keras.saving.load_model(tmp_path / result["files"]["h5"])
    np.testing.assert_allclose(
        native.predict(images, verbose=0), legacy.predict(images, verbose=0), rtol=1e-6, atol=1e-7
    )
    # The job tests on images prepared as uploads are.
    prepared = prepare_images(test.images[:200])
    accuracy = np.mean(np.argmax(native.predict(prepared, verbose=0), 1) == test.labels[:200])
    assert accuracy == pytest.approx(result["test_accuracy"], abs=1e-6)
    assert np.sum(result["confusion_matrix"]) == SMALL["test_limit"]


def test_gradient_statistics_equal_an_independent_gradient_tape(mnist_path):
    train, _ = load_mnist(mnist_path)
    model = build_mlp([32, 16], activation="sigmoid", dropout_rate=0.3, l2=1e-3)
    x, y = train.images[:PROBE_SIZE].astype("float32"), train.labels[:PROBE_SIZE]
    statistics = gradient_statistics(model, x, y, keras.losses.sparse_categorical_crossentropy)

    with tf.GradientTape() as tape:
        probabilities = model(x, training=False)
        picked = tf.gather(probabilities, y.astype("int32"), batch_dims=1)
        loss = -tf.reduce_mean(tf.math.log(picked))
        loss += sum(
            1e-3 * tf.reduce_sum(tf.square(layer.kernel))
            for layer in model.layers
            if layer.name.startswith("hidden_")
        )
    gradients = tape.gradient(loss, model.trainable_variables)
    expected = {
        v.path: np.abs(g.numpy()) for v, g in zip(model.trainable_variables, gradients, strict=True)
    }
    assert len(statistics) == len(expected) == 6
    for entry in statistics:
        values = expected[f"{entry['layer']}/{entry['parameter']}"]
        assert entry["max_abs"] == pytest.approx(values.max(), rel=1e-4)
        assert entry["mean_abs"] == pytest.approx(values.mean(), rel=1e-4)
        assert entry["l2_norm"] == pytest.approx(np.sqrt(np.sum(values**2)), rel=1e-4)
    assert [entry["depth"] for entry in statistics] == [1, 1, 2, 2, 3, 3]
