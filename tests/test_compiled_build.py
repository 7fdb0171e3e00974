"""The compiled build's guard: a module compiled in place must not outlive an edit of its source."""

import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from streams import engine_build


def test_a_module_compiled_before_its_source_changed_is_refused(tmp_path: Path) -> None:
    source, compiled = tmp_path / "engine.py", tmp_path / f"engine{EXTENSION_SUFFIXES[0]}"
    source.write_text("")
    compiled.write_bytes(b"")
    os.utime(source, (1_000, 1_000))
    os.utime(compiled, (1_001, 1_001))
    engine_build.check(tmp_path)  # compiled after the source

    os.utime(source, (1_001 + 3, 1_001 + 3))
    with pytest.raises(ImportError, match="compiled before engine.py last changed"):
        engine_build.check(tmp_path)
    engine_build.check(tmp_path, slack_s=5)  # an installer's writes, one after the other
