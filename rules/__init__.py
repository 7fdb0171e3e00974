"""The pure tier engine: policy compilation, metrics, tier and churn decisions. No I/O, no clock.

Its hot modules may run compiled by mypyc, as extension modules beside their sources (setup.py,
docs/engine.md); `build()` says which build runs.
"""

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path


def build() -> str:
    """"mypyc" when the engine's hot modules run compiled, else "python"."""
    from rules import engine
    return "mypyc" if engine.__file__.endswith(tuple(EXTENSION_SUFFIXES)) else "python"


def _check_compiled(package: Path, slack_s: float = 2.0) -> None:
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


_check_compiled(Path(__file__).parent)
