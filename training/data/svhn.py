"""SVHN's cropped digits in the original `train_32x32.mat` / `test_32x32.mat` layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.mnist import Split

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
DEFAULT_SVHN_DIR = Path.home() / ".keras" / "datasets" / "svhn"


def load_svhn(folder: Path | str | None = None, download: bool = True) -> tuple[Split, Split]:
    """The (train, test) splits: images (N, 32, 32, 3) uint8 and labels 0..9.

    Reads the files from `folder` (default ~/.keras/datasets/svhn); a missing file is
    downloaded from SVHN's site when `download` is set and the internet can be reached.
    """
    folder = Path(folder) if folder is not None else DEFAULT_SVHN_DIR
    splits = tuple(_load_split(folder, split, download) for split in ("train", "test"))
    return splits[0], splits[1]


def _load_split(folder: Path, split: str, download: bool) -> Split:
    from scipy.io import loadmat

    path = folder / SVHN_FILES[split]
    if not path.is_file():
        if not download:
            raise ValueError(
                f"{path} does not exist. Put SVHN's {SVHN_FILES[split]} in {folder} (set "
                f"SVHN_DIR to another folder that holds it), or allow the download."
            )
        _download(folder, SVHN_FILES[split])
    data = loadmat(path)
    if "X" not in data or "y" not in data:
        raise ValueError(f"{path} lacks the arrays X and y of SVHN's original .mat layout.")
    images, labels = data["X"], data["y"].reshape(-1)
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels):
        raise ValueError(
            f"{path}: X has shape {images.shape} and y {data['y'].shape}; expected X of shape "
            f"(32, 32, 3, N) and y of N labels, as in SVHN's {SVHN_FILES[split]}."
        )
    labels = np.where(labels == 10, 0, labels).astype(np.uint8)  # SVHN writes digit 0 as 10
    return Split(np.ascontiguousarray(np.transpose(images, (3, 0, 1, 2))), labels)


def _download(folder: Path, file_name: str) -> None:
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    try:
        keras.utils.get_file(
            file_name, origin=SVHN_URL + file_name, cache_dir=str(folder), cache_subdir=""
        )
    except Exception as error:
        raise ValueError(
            f"Could not download {SVHN_URL + file_name} ({error}). Without internet, put the "
            f"file in {folder} yourself, or set SVHN_DIR to a folder that holds it."
        ) from error
