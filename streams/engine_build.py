"""Which build of the engine runs: pure Python, or its hot modules compiled by mypyc as extension
modules beside their sources (setup.py, docs/engine.md#the-compiled-build)."""

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import rules

RULES = Path(rules.__file__).parent


def build() -> str:
    """"mypyc" when the engine's hot modules run compiled, else "python"."""
    from rules import engine
    return "mypyc" if engine.__file__.endswith(tuple(EXTENSION_SUFFIXES)) else "python"


def check(package: Path = RULES, slack_s: float = 2.0) -> None:
    """Refuse a compiled module older than its source: a checkout compiled in place and then
    edited would run the old code. (`slack_s`: an installer writes a wheel's files one after
    the other.)"""
    for extension in package.iterdir():
        name, dot, suffix = extension.name.partition(".")
        source = package / f"{name}.py"
        if dot and f".{suffix}" in EXTENSION_SUFFIXES and source.exists() \
                and source.stat().st_mtime > extension.stat().st_mtime + slack_s:
            raise ImportError(
                f"{extension} was compiled before {source.name} last changed: compile again "
                "(TIERSTREAM_COMPILE=1 python setup.py build_ext --inplace) or delete it")
