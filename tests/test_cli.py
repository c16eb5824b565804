"""`python -m service.cli` against the running service, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tests.photo_like import encode, photo_of_row
from tests.stack import REPO_ROOT


def cli(stack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "--url", stack.base_url, *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_submit_and_follow_a_job_to_its_end(stack, mnist_path):
    run = cli(stack, "submit", "mlp", "hidden_units=[16]", "epochs=2", "train_limit=600",
              "test_limit=100", "--follow", "--poll", "0.1")  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    job_id = lines[0].split()[1]
    assert lines[0] == f"job {job_id} queued (mlp)"
    assert any("epoch 2/2" in line and "[" in line for line in lines)  # the progress bar
    assert lines[-1].startswith("succeeded: ") and "test_accuracy" in lines[-1]
    assert stack.job(job_id)["status"] == "succeeded"

    table = cli(stack, "history", job_id)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    recorded = stack.client.get(f"/jobs/{job_id}/history").json()
    assert header.split()[:2] == ["epoch", "loss"]
    assert sorted(header.split()) == sorted(recorded[0])
    assert [row.split()[0] for row in rows] == [str(entry["epoch"]) for entry in recorded]


def test_a_refused_job_says_why(stack):
    run = cli(stack, "submit", "mlp", "epochs=0")
    assert run.returncode == 1
    assert run.stderr.startswith("error: 422") and "epochs" in run.stderr
    assert cli(stack, "submit", "mlp", "epochs").stderr.startswith("error: 'epochs' is not")


def test_a_preset_a_download_and_predictions(stack, digit_model, test_digits, tmp_path):
    images, _ = test_digits
    run = cli(stack, "follow", stack.submit("backprop", steps=2)["id"])
    assert run.returncode == 0 and "succeeded" in run.stdout

    saved = cli(stack, "download", digit_model["id"], "--output", str(tmp_path / "m.keras"))
    assert saved.returncode == 0, saved.stderr
    assert (tmp_path / "m.keras").read_bytes() == stack.client.get(
        f"/models/{digit_model['id']}/download"
    ).content

    paths = []
    for i, image in enumerate(images[:10]):
        paths.append(tmp_path / f"d{i}.png")
        paths[-1].write_bytes(encode(image, "PNG"))
    digits = cli(stack, "predict", "digit", *map(str, paths[:3]), "--model", digit_model["id"])
    assert digits.returncode == 0, digits.stderr
    expected = [p["digit"] for p in stack.client.post(
        "/predict/digit", params={"model": digit_model["id"]},
        files=[("file", (p.name, p.read_bytes())) for p in paths[:3]],
    ).json()["predictions"]]  # fmt: skip
    assert [int(line.split(": ")[1].split()[0]) for line in digits.stdout.splitlines()] == expected

    total = cli(stack, "predict", "sum", *map(str, paths), "--method", "digit-model",
                "--model", digit_model["id"])  # fmt: skip
    assert total.returncode == 0, total.stderr
    row = tmp_path / "row.jpg"
    row.write_bytes(encode(photo_of_row(images[:10], np.random.default_rng(1)), "JPEG", 90))
    from_row = cli(stack, "predict", "sum", "--row", str(row), "--method", "digit-model",
                   "--model", digit_model["id"])  # fmt: skip
    assert from_row.returncode == 0, from_row.stderr
    assert from_row.stdout.startswith("sum ")


def test_an_unreachable_service_is_reported(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "--url", "http://127.0.0.1:9", "history", "x"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "cannot reach the service" in run.stderr
