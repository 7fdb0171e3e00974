"""Paths of the CDNOW test data (see tests/data/README.md).

``cdnow_slice_path()`` is the small committed slice (customers 1..50).
``cdnow_master_path()`` is the full file in ``.cache/data/``; if it is missing, the fetch
script ``tests/fetch_data.sh`` is run once with this interpreter, and a RuntimeError
with the script's output is raised if that fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / ".cache" / "data"
FETCH_SCRIPT = REPO_ROOT / "tests" / "fetch_data.sh"


def cdnow_slice_path() -> Path:
    """The committed slice: all 218 purchase lines of CDNOW customers 1..50."""
    return REPO_ROOT / "tests" / "data" / "cdnow_slice.txt"


def cdnow_master_path() -> Path:
    """The full CDNOW_master.txt (69,659 purchases + 1 header line), fetched if missing."""
    path = DATA_DIR / "CDNOW_master.txt"
    if not path.is_file():
        _fetch()
    if not path.is_file():
        raise RuntimeError(f"{FETCH_SCRIPT} ran but {path} is still missing")
    return path


def _fetch() -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    try:
        proc = subprocess.run(
            ["bash", str(FETCH_SCRIPT)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"could not run {FETCH_SCRIPT}: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(
            f"bash {FETCH_SCRIPT} failed (exit {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}".rstrip()
        )
