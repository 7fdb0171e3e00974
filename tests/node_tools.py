"""The Node.js validators under tests/node/ (.ci/run installs them with npm ci)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE = Path(__file__).resolve().parent / "node"


def run(script: str, stdin: str, *args: str) -> str:
    """What tests/node/<script> prints given `stdin`; skipped (failed in CI, which installs
    them) without Node.js or the packages."""
    if shutil.which("node") is None or not (NODE / "node_modules").is_dir():
        message = "Node.js validators not installed (Node.js 20+, then: npm ci --prefix " \
                  "tests/node)"
        if os.environ.get("CI"):  # never skip the check in CI
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(["node", str(NODE / script), *args], input=stdin,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout
