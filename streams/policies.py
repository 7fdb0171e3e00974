"""Finds and reads policy files: a path, or the name of a policy shipped in rules/policies/."""

from __future__ import annotations

from pathlib import Path

import rules
from models.errors import PolicyError
from rules.compiled import CompiledPolicy
from rules.policy_file import parse_policy

BUILTIN_DIR = Path(rules.__file__).parent / "policies"


def load_policy(path: str | Path) -> CompiledPolicy:
    """Load a policy file, or a shipped policy by name (`default`)."""
    path = Path(path)
    if not path.exists() and (BUILTIN_DIR / f"{path}.yaml").exists():
        path = BUILTIN_DIR / f"{path}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"cannot read the policy: {error.strerror}", file=str(path)) from None
    return parse_policy(text, str(path))


def builtin_policies() -> list[Path]:
    return sorted(BUILTIN_DIR.glob("*.yaml"))
