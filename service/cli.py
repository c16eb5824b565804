"""`python -m service.cli`: the service from a terminal, over HTTP like any other client.

    python -m service.cli submit mlp depth=3 activation=relu epochs=5 --follow
    python -m service.cli preset cnn --follow
    python -m service.cli follow JOB_ID
    python -m service.cli history JOB_ID
    python -m service.cli download MODEL [--format h5] [--output FILE]
    python -m service.cli predict digit photo.jpg [more.png ...] [--model ALIAS]
    python -m service.cli predict sum d0.png ... d9.png | --row row.jpg [--method digit-model]

The API's address comes from --url or DIGIT_SERVICE_URL (default http://127.0.0.1:8000), its
token, if it has one, from --token or DIGIT_SERVICE_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = {"succeeded", "failed", "cancelled"}
BAR_WIDTH = 30


class CommandError(Exception):
    """A request the service refused; the message is its explanation."""


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with httpx.Client(base_url=args.url, timeout=args.timeout, headers=headers) as client:
        try:
            return args.command(client, args, out)
        except CommandError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except httpx.TransportError as error:
            print(f"error: cannot reach the service at {args.url} ({error}).", file=sys.stderr)
            return 2


def submit(client: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    params = dict(_parameter(item) for item in args.params)
    job = _json(client.post("/jobs", json={"kind": args.kind, "params": params}))
    print(f"job {job['id']} queued ({job['kind']})", file=out)
    return follow_job(client, job["id"], out, args.poll) if args.follow else 0


def preset(client: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    record = _json(client.post(f"/presets/{args.name}/submit"))
    if "jobs" in record:  # a sweep
        print(f"sweep {record['id']} queued: {len(record['jobs'])} jobs", file=out)
        return 0
    print(f"job {record['id']} queued ({record['kind']})", file=out)
    return follow_job(client, record["id"], out, args.poll) if args.follow else 0


def follow(client: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    return follow_job(client, args.job_id, out, args.poll)


def follow_job(client: httpx.Client, job_id: str, out: TextIO, poll: float) -> int:
    """Show the job's progress until it finishes; 0 if it succeeded."""
    last = ""
    while True:
        job = _json(client.get(f"/jobs/{job_id}"))
        line = progress_line(job)
        if line != last:
            end = "\n" if not out.isatty() else ""
            print(("\r" if out.isatty() else "") + line.ljust(len(last)), end=end, file=out)
            out.flush()
            last = line
        if job["status"] in FINISHED:
            break
        time.sleep(poll)
    if out.isatty():
        print(file=out)
    if job["status"] == "succeeded":
        print(f"succeeded: {json.dumps(_summary(job['result']))}", file=out)
        return 0
    print(f"{job['status']}: {job.get('error') or ''}".rstrip(": "), file=out)
    return 1


def progress_line(job: dict[str, Any]) -> str:
    """One line: status, a bar over the epochs (or steps), and the batch within the epoch."""
    progress = job.get("progress") or {}
    if "epoch" in progress and progress.get("epochs"):
        done = progress["epoch"] - 1 + progress.get("batch", 0) / max(progress.get("batches", 1), 1)
        fraction = done / progress["epochs"]
        detail = f"epoch {progress['epoch']}/{progress['epochs']}"
        if progress.get("batches"):
            detail += f", batch {progress.get('batch', 0)}/{progress['batches']}"
    elif "step" in progress and progress.get("steps"):
        fraction = progress["step"] / progress["steps"]
        detail = f"step {progress['step']}/{progress['steps']}"
    else:
        fraction = 1.0 if job["status"] == "succeeded" else 0.0
        detail = ""
    filled = round(BAR_WIDTH * min(max(fraction, 0.0), 1.0))
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"{job['id'][:8]} {job['status']:<9} [{bar}] {fraction:4.0%} {detail}".rstrip()


def history(client: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    entries = _json(client.get(f"/jobs/{args.job_id}/history"))
    if not entries:
        print("no epochs recorded yet", file=out)
        return 0
    others = [name for name in entries[0] if name != "epoch"]
    columns = ["epoch", *sorted(others, key=lambda name: name != "loss")]  # the loss first
    rows = [[_cell(entry.get(name)) for name in columns] for entry in entries]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(columns)]
    print(
        "  ".join(name.rjust(width) for name, width in zip(columns, widths, strict=True)), file=out
    )
    for row in rows:
        print(
            "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)), file=out
        )
    return 0


def download(client: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    response = client.get(f"/models/{args.model}/download", params={"format": args.format})
    if response.status_code != 200:
        _json(response)
    disposition = response.headers.get("content-disposition", "")
    name = disposition.split("filename=")[-1].strip('"') if "filename=" in disposition else None
    path = Path(args.output or name or f"{args.model}.{args.format}")
    path.write_bytes(response.content)
    print(f"saved {path} ({len(response.content):,} bytes)", file=out)
    return 0


def predict_digit(client: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    files = [("file", (path.name, path.read_bytes())) for path in map(Path, args.files)]
    body = _json(client.post("/predict/digit", files=files, params=_model(args)))
    for path, prediction in zip(args.files, body.get("predictions", [body]), strict=True):
        print(f"{path}: {prediction['digit']} (confidence {prediction['confidence']:.1%}, "
              f"model {prediction['model']['id']})", file=out)  # fmt: skip
    return 0


def predict_sum(client: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.row:
        files = [("file", (Path(args.row).name, Path(args.row).read_bytes()))]
    else:
        files = [("files", (path.name, path.read_bytes())) for path in map(Path, args.files)]
    params = {**_model(args), "method": args.method}
    body = _json(client.post("/predict/sum", files=files, params=params))
    print(f"sum {body['sum']}  digits {' '.join(map(str, body['digits']))}  "
          f"running {' '.join(map(str, body['cumulative']))}  "
          f"{'(uncertain) ' * body['uncertain']}"
          f"({body['method']}, model {body['model']['id']})", file=out)  # fmt: skip
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.cli", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", default=os.environ.get("DIGIT_SERVICE_URL", DEFAULT_URL))
    parser.add_argument(
        "--token",
        default=os.environ.get("DIGIT_SERVICE_TOKEN"),
        help="the service's API_TOKEN, if it has one (default: DIGIT_SERVICE_TOKEN)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    commands = parser.add_subparsers(required=True, metavar="command")

    def command(name: str, handler, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary)
        sub.set_defaults(command=handler)
        return sub

    sub = command("submit", submit, "submit a job: KIND key=value ... (values as JSON)")
    sub.add_argument("kind")
    sub.add_argument("params", nargs="*", metavar="key=value")
    _follow_options(sub)
    sub = command("preset", preset, "submit a preset by name (see GET /presets)")
    sub.add_argument("name")
    _follow_options(sub)
    sub = command("follow", follow, "show a job's progress until it finishes")
    sub.add_argument("job_id")
    sub.add_argument("--poll", type=float, default=0.5, help="seconds between updates")
    sub = command("history", history, "print a job's per-epoch history as a table")
    sub.add_argument("job_id")
    sub = command("download", download, "download a model (id or alias)")
    sub.add_argument("model")
    sub.add_argument("--format", choices=["keras", "h5"], default="keras")
    sub.add_argument("--output", "-o", help="file to write; default: the name the service gives")
    sub = commands.add_parser("predict", help="predict a digit or a sum from image files")
    kinds = sub.add_subparsers(required=True, metavar="digit|sum")
    digit = kinds.add_parser("digit", help="read the digit in each image")
    digit.set_defaults(command=predict_digit)
    digit.add_argument("files", nargs="+")
    digit.add_argument("--model", help="model id or alias; default: the newest cnn")
    total = kinds.add_parser("sum", help="the sum of 10 digit images, or of one row of 10")
    total.set_defaults(command=predict_sum)
    total.add_argument("files", nargs="*")
    total.add_argument("--row", help="one image of a row of 10 digits, instead of 10 files")
    total.add_argument("--method", choices=["auto", "calculator", "digit-model"], default="auto")
    total.add_argument("--model", help="model id or alias")
    return parser


def _follow_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--follow", "-f", action="store_true", help="show progress until it ends")
    sub.add_argument("--poll", type=float, default=0.5, help="seconds between updates")


def _parameter(item: str) -> tuple[str, Any]:
    name, separator, raw = item.partition("=")
    if not separator or not name:
        raise CommandError(f"{item!r} is not key=value (e.g. epochs=5 or hidden_units=[64,32]).")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw  # a bare word: a string such as relu


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise CommandError(f"{response.status_code}: {detail}")
    return response.json()


def _model(args: argparse.Namespace) -> dict[str, str]:
    return {"model": args.model} if args.model else {}


def _summary(result: dict[str, Any] | None) -> dict[str, Any]:
    """The result without its bulky parts (confusion matrix, graph nodes, loss history)."""
    bulky = {"confusion_matrix", "nodes", "history"}
    return {key: value for key, value in (result or {}).items() if key not in bulky}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
