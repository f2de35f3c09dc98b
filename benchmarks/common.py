"""What every benchmark records next to its figures: command, device, jax version, date."""

from __future__ import annotations

import datetime
import json
import re
import sys
from pathlib import Path

import jax

from metajax.distributed import device_info

RESULTS = Path(__file__).resolve().parent / "results"


def device_name() -> str:
    """The accelerator's name, or the CPU model for CPU runs."""
    info = device_info()
    return info["cpu_model"] if info["platform"] == "cpu" else info["device_kind"]


def device_slug() -> str:
    """A short file-name-safe device label: 'cpu' or the GPU's name ('nvidia-h100-...')."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device.device_kind.lower()).strip("-")


def run_metadata() -> dict:
    """The command, device, device count, jax version and date of this run."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if script.parent.name == "benchmarks":
        launcher = f"python -m benchmarks.{script.stem}"
    else:
        launcher = f"python {script.name}"
    return {
        "command": " ".join([launcher] + sys.argv[1:]),
        "device": device_name(),
        "platform": jax.devices()[0].platform,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def metadata_markdown(meta: dict) -> str:
    """The metadata as markdown lines for the top of a results file."""
    return (
        f"- command: `{meta['command']}`\n"
        f"- device: {meta['device']} ({meta['platform']}, {meta['device_count']} device(s))\n"
        f"- jax {meta['jax_version']}, {meta['date']}\n"
    )


def write_results(stem: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Writes ``results/<stem>.json`` and ``.md``; returns their paths."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    md_path.write_text(markdown)
    return json_path, md_path
