"""The wheel contains every module of metajax and metajax.envs."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(folder: Path, package: str) -> set[str]:
    return {
        f"{package.replace('.', '/')}/{path.relative_to(folder).as_posix()}"
        for path in folder.rglob("*.py")
        if "__pycache__" not in path.parts
    }


def test_wheel_contains_every_module(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("metajax-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _modules(ROOT / "src" / "metajax", "metajax") | _modules(
        ROOT / "envs", "metajax.envs"
    )
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel (add the package to pyproject.toml): {missing}"
