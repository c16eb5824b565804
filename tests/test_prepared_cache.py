"""The disk cache of prepared training images: the same images as without it, prepared once."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

import training.data.prepared as prepared_module
from training.data import prepared_cache
from training.data.mnist import load_mnist
from training.data.prepared import CHUNK, load_prepared_mnist, prepare_dataset
from training.data.prepared_cache import PreparedCache

SLICE = CHUNK + 300  # one whole chunk and a partial one


@pytest.fixture(scope="module")
def raw_images(mnist_path: Path) -> np.ndarray:
    train, _ = load_mnist(mnist_path)
    return train.images[:SLICE]


@pytest.fixture
def count_preparations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of images `prepare_images` prepared, call by call."""
    calls: list[int] = []
    original = prepared_module.prepare_images

    def counting(images, *args, **kwargs):
        calls.append(len(images))
        return original(images, *args, **kwargs)

    monkeypatch.setattr(prepared_module, "prepare_images", counting)
    return calls


@pytest.mark.parametrize(("fraction", "seed"), [(0.0, None), (0.5, 3)])
def test_cached_images_equal_fresh_ones_and_are_prepared_once(
    raw_images, tmp_path, count_preparations, fraction, seed
):
    fresh = prepare_dataset(raw_images, fraction, seed)
    cache = PreparedCache(tmp_path)
    first = prepare_dataset(raw_images, fraction, seed, cache)
    count_preparations.clear()
    again = prepare_dataset(raw_images, fraction, seed, cache)
    head = prepare_dataset(raw_images[:CHUNK], fraction, seed, cache)  # a shorter slice's head
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(again, fresh)
    np.testing.assert_array_equal(head, fresh[:CHUNK])
    assert count_preparations == []
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_distortions_depend_on_the_seed_and_unseeded_ones_are_not_cached(
    raw_images, tmp_path, count_preparations
):
    cache = PreparedCache(tmp_path)
    seeded = [prepare_dataset(raw_images[:200], 0.5, seed, cache) for seed in (1, 2)]
    assert not np.array_equal(*seeded)
    before = len(list(tmp_path.glob("*.npy")))
    count_preparations.clear()
    prepare_dataset(raw_images[:200], 0.5, None, cache)
    prepare_dataset(raw_images[:200], 0.5, None, cache)
    assert count_preparations == [200, 200]
    assert len(list(tmp_path.glob("*.npy"))) == before


def test_a_change_to_the_preparation_code_misses_old_entries(
    raw_images, tmp_path, monkeypatch, count_preparations
):
    cache = PreparedCache(tmp_path)
    prepare_dataset(raw_images[:100], cache=cache)
    monkeypatch.setattr(prepared_cache, "code_digest", lambda: "another preparation")
    count_preparations.clear()
    prepare_dataset(raw_images[:100], cache=cache)
    assert count_preparations == [100]


def test_a_torn_entry_is_prepared_again_and_replaced(raw_images, tmp_path):
    cache = PreparedCache(tmp_path)
    fresh = prepare_dataset(raw_images[:100], cache=cache)
    (entry,) = tmp_path.glob("*.npy")
    entry.write_bytes(entry.read_bytes()[:1000])
    np.testing.assert_array_equal(prepare_dataset(raw_images[:100], cache=cache), fresh)
    np.testing.assert_array_equal(np.load(entry), fresh)


def test_an_unwritable_cache_is_skipped(raw_images, tmp_path):
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("")
    fresh = prepare_dataset(raw_images[:100])
    cached = prepare_dataset(raw_images[:100], cache=PreparedCache(blocker / "prepared"))
    np.testing.assert_array_equal(cached, fresh)
    assert not list(tmp_path.glob("**/*.tmp"))


def test_the_least_recently_used_entries_go_past_the_bound(raw_images, tmp_path):
    one_entry = 100 * 28 * 28 * 4 + 128  # float32 images and the .npy header
    cache = PreparedCache(tmp_path, max_bytes=2 * one_entry)
    for start in (0, 100, 200):
        prepare_dataset(raw_images[start : start + 100], cache=cache)
        time.sleep(0.05)  # distinct modification times, whatever the file system's resolution
    kept = {path.name for path in tmp_path.glob("*.npy")}
    assert len(kept) == 2
    assert f"{cache.key(raw_images[:100], 'none')}.npy" not in kept


def test_the_cache_folder_is_configurable_and_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("PREPARED_CACHE_DIR", str(tmp_path))
    assert prepared_cache.default_cache_dir() == tmp_path
    monkeypatch.setenv("PREPARED_CACHE_DIR", "off")
    assert prepared_cache.default_cache_dir() is None
    monkeypatch.delenv("PREPARED_CACHE_DIR")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert prepared_cache.default_cache_dir() == tmp_path / "datasets" / "prepared"


def test_load_prepared_mnist_uses_the_configured_cache(mnist_path, monkeypatch, tmp_path):
    monkeypatch.setenv("PREPARED_CACHE_DIR", str(tmp_path))
    train, test = load_prepared_mnist(mnist_path, train_limit=50, test_limit=30)
    assert train.images.shape == (50, 28, 28) and test.images.shape == (30, 28, 28)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_a_cache_it_may_only_read_is_still_used(
    raw_images, tmp_path, monkeypatch, count_preparations
):
    cache = PreparedCache(tmp_path)
    prepare_dataset(raw_images[:100], cache=cache)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(prepared_cache.os, "utime", refuse)
    count_preparations.clear()
    prepare_dataset(raw_images[:100], cache=cache)
    assert count_preparations == []


def test_temporary_files_a_killed_writer_left_are_removed(raw_images, tmp_path):
    left = tmp_path / "abc123.tmp"
    left.write_bytes(b"half an entry")
    recent = tmp_path / "def456.tmp"
    recent.write_bytes(b"being written")
    old = time.time() - prepared_cache.STALE_TEMPORARY_SECONDS - 60
    os.utime(left, (old, old))
    prepare_dataset(raw_images[:100], cache=PreparedCache(tmp_path))
    assert not left.exists() and recent.exists()


def test_the_bound_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("PREPARED_CACHE_BYTES", "12345")
    assert PreparedCache(tmp_path).max_bytes == 12345
    monkeypatch.setenv("PREPARED_CACHE_BYTES", "lots")
    assert PreparedCache(tmp_path).max_bytes == prepared_cache.MAX_CACHE_BYTES
