"""wrk (https://github.com/wg/wrk, Debian's `wrk` package; `make bench-tools`) as the load
generator of bench/predict_load.py: one thread, N keep-alive connections, POSTs of a few
request bodies built up front and cycled through by a generated Lua script.

wrk's C event loop takes a few percent of a core where the Python generator
(bench/load_generator.py) takes a large share of one, on a machine it shares with the servers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from bench.load_generator import Load

# Lua: each body is read from its file once per thread; request() cycles through them.
SCRIPT = """\
local files = {%(files)s}
local requests = {}
local next_index = 0

function init(args)
  for i, path in ipairs(files) do
    local file = assert(io.open(path, "rb"))
    local body = file:read("*a")
    file:close()
    requests[i] = wrk.format("POST", %(path)s, {["Content-Type"] = %(content_type)s}, body)
  end
end

function request()
  next_index = next_index %% #requests + 1
  return requests[next_index]
end
"""
TIMEOUT = "60s"  # wrk's default, 2 s, would count the naive server's slow answers as errors
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def available() -> bool:
    return shutil.which("wrk") is not None


def lua_string(text: str) -> str:
    """`text` as a Lua string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_script(folder: Path, path: str, content_type: str, bodies: list[bytes]) -> Path:
    """A wrk script posting `bodies` in turn to `path`, the bodies in files beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, body in enumerate(bodies):
        file = folder / f"body-{index}"
        file.write_bytes(body)
        files.append(lua_string(str(file)))
    script = folder / "post.lua"
    script.write_text(
        SCRIPT
        % {
            "files": ", ".join(files),
            "path": lua_string(path),
            "content_type": lua_string(content_type),
        }
    )
    return script


def run(url: str, script: Path, concurrency: int, seconds: int) -> Load:
    """wrk -t1 against `url` with `script` for `seconds` (whole seconds: wrk's unit)."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, seconds)}s", f"--timeout={TIMEOUT}",
               "--latency", "-s", str(script), url]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse(output, concurrency)


def parse(output: str, concurrency: int) -> Load:
    """wrk's --latency report as figures."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output)
    throughput = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if total is None or throughput is None:
        raise ValueError(f"Not a wrk report:\n{output}")
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)  # fmt: skip
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = (sum(int(n) for n in socket.groups()) if socket else 0) + (
        int(status.group(1)) if status else 0
    )
    return Load(
        concurrency=concurrency,
        seconds=float(total.group(2)) * UNITS[total.group(3)] / 1000,
        requests=int(total.group(1)),
        throughput=float(throughput.group(1)),
        p50_ms=_percentile_ms(output, 50),
        p99_ms=_percentile_ms(output, 99),
        errors=errors,
    )


def _percentile_ms(output: str, q: int) -> float:
    """A percentile of the latency distribution (wrk prints 50, 75, 90 and 99)."""
    found = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    return float(found.group(1)) * UNITS[found.group(2)] if found else float("nan")
