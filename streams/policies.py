"""Finds and reads policy files: a path, or the name of a policy shipped in rules/policies/.

A policy's `model:` is a model file relative to the policy file, or the name of a model shipped
in rules/policies/models/.
"""

from __future__ import annotations

from pathlib import Path

import rules
from models.errors import PolicyError
from rules.compiled import CompiledPolicy
from rules.lifetime_value import Model
from rules.policy_file import MAX_POLICY_SIZE, parse_policy
from streams import model_file

BUILTIN_DIR = Path(rules.__file__).parent / "policies"
BUILTIN_MODELS = BUILTIN_DIR / "models"


def load_policy(path: str | Path) -> CompiledPolicy:
    """Load a policy file, or a shipped policy by name (`default`)."""
    path = Path(path)
    if not path.exists() and (BUILTIN_DIR / f"{path}.yaml").exists():
        path = BUILTIN_DIR / f"{path}.yaml"
    try:
        size = path.stat().st_size
        if size > MAX_POLICY_SIZE:
            raise PolicyError(f"the policy file is {size:,} bytes, more than the "
                              f"{MAX_POLICY_SIZE:,} allowed (1 MiB)", file=str(path))
        with path.open("rb") as opened:
            raw = opened.read(MAX_POLICY_SIZE + 1)  # a pipe or device has no size to stat
    except OSError as error:
        raise PolicyError(f"cannot read the policy: {error.strerror}", file=str(path)) from None
    if len(raw) > MAX_POLICY_SIZE:
        raise PolicyError(f"the policy file is more than the {MAX_POLICY_SIZE:,} bytes allowed "
                          "(1 MiB)", file=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(f"not UTF-8: byte {error.start} is invalid", file=str(path),
                          line=raw.count(b"\n", 0, error.start) + 1) from None
    return parse_policy(text, str(path), lambda name: read_model(name, path.parent))


def read_model(name: str, directory: Path) -> Model:
    """The model file `name` (relative to `directory`), or a shipped model by name (`cdnow`)."""
    path = directory / name
    if not path.exists() and (BUILTIN_MODELS / f"{name}.yaml").exists():
        path = BUILTIN_MODELS / f"{name}.yaml"
    return model_file.read(path)


def builtin_policies() -> list[Path]:
    return sorted(BUILTIN_DIR.glob("*.yaml"))
