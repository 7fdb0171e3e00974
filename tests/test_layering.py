"""Architecture guard: the pure core (models/, rules/) does no I/O, reads no clock and never
imports the streaming layer.

Every .py file under models/ and rules/ is parsed with ``ast`` (never imported) and checked for
forbidden imports and forbidden calls. Time, randomness and I/O enter the core only as
arguments (e.g. an event's timestamp), which keeps it deterministic and testable.

The one exception is rules/policy_file.py, which may import ``yaml`` to parse policy text;
reading the file is streams/policies.py's job.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CORE_PACKAGES = ("models", "rules")

# Modules that the core must not import, nor any of their submodules.
FORBIDDEN_MODULES = frozenset(
    {
        # the streaming layer and its infrastructure
        "streams",
        "faust",
        "mode",
        "aiokafka",
        "kafka",
        "redis",
        "prometheus_client",
        # I/O, processes, concurrency, the clock, randomness
        "socket",
        "asyncio",
        "subprocess",
        "os",
        "time",
        "requests",
        "urllib",
        "http",
        "random",
        "pathlib",
        "secrets",
        "threading",
    }
)
# The contracts sit below the engine: models/ must not import rules/ (rules/ imports models/).
MODELS_FORBIDDEN = frozenset({"rules"})
# Only the policy parser may parse YAML; nothing in the core touches the file system.
POLICY_LOADER = "rules/policy_file.py"
LOADER_ONLY_MODULES = frozenset({"yaml"})

# Fully-qualified names whose use reads the clock (called or passed as a factory).
CLOCK_READS = frozenset(
    {
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "datetime.datetime.today",
        "datetime.date.today",
        "time.time",
    }
)
# Same, by the last two components of the name as written, in case an alias is not resolved.
CLOCK_SUFFIXES = frozenset(name.split(".", 1)[1] for name in CLOCK_READS if name.count(".") == 2)
CLOCK_SUFFIXES |= {"time.time"}

# Non-deterministic ids (random / clock+MAC based); uuid.uuid5 is fine.
NONDETERMINISTIC = frozenset({"uuid.uuid1", "uuid.uuid4"})

IO_BUILTINS = frozenset({"print", "input", "open"})
LOADER_ONLY_BUILTINS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _is_forbidden_module(module: str, forbidden: frozenset[str]) -> str | None:
    """Return the forbidden root that `module` is or lies under, else None."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in forbidden:
            return prefix
    return None


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for Name/Attribute chains, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self, relpath: str) -> None:
        self.relpath = relpath
        self.is_loader = relpath == POLICY_LOADER
        self.forbidden = FORBIDDEN_MODULES | (
            frozenset() if self.is_loader else LOADER_ONLY_MODULES
        ) | (MODELS_FORBIDDEN if relpath.startswith("models/") else frozenset())
        self.io_builtins = IO_BUILTINS | (frozenset() if self.is_loader else LOADER_ONLY_BUILTINS)
        # package of the module, for resolving relative imports: models/a/b.py -> models.a
        self.package = relpath[: -len(".py")].split("/")[:-1]
        self.aliases: dict[str, str] = {}  # local name -> fully-qualified name
        self.violations: list[Violation] = []

    def _report(self, node: ast.AST, message: str) -> None:
        self.violations.append(Violation(self.relpath, getattr(node, "lineno", 0), message))

    def _check_module(self, node: ast.AST, module: str) -> None:
        root = _is_forbidden_module(module, self.forbidden)
        if root is not None:
            where = f" outside {POLICY_LOADER}" if root in LOADER_ONLY_MODULES else ""
            self._report(node, f"forbidden import of {module!r} ({root}{where})")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            keep = len(self.package) - (node.level - 1)
            base = self.package[: max(keep, 0)]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        if module:
            self._check_module(node, module)
        for alias in node.names:
            if alias.name == "*":
                continue
            full = f"{module}.{alias.name}" if module else alias.name
            if not module or node.level and not node.module:
                # `from . import x` / `from .. import streams`: x itself is the module
                self._check_module(node, full)
            self.aliases[alias.asname or alias.name] = full
        self.generic_visit(node)

    def _qualify(self, dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        target = self.aliases.get(head, head)
        return f"{target}.{rest}" if rest else target

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node)
        if dotted is not None:
            qualified = self._qualify(dotted)
            suffix = ".".join(dotted.split(".")[-2:])
            if qualified in CLOCK_READS or suffix in CLOCK_SUFFIXES:
                self._report(node, f"reads the clock: {dotted}")
            elif qualified in NONDETERMINISTIC:
                self._report(node, f"non-deterministic: {dotted}")
            elif qualified == "io.open":
                self._report(node, "does file I/O: io.open")
            # don't descend: `datetime.datetime.now` must be reported once, not per prefix
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in self.io_builtins:
                self._report(node, f"does I/O: builtin {func.id}()")
            if func.id == "__import__":
                self._check_dynamic_import(node)
        elif self._qualify(_dotted(func) or "") == "importlib.import_module":
            self._check_dynamic_import(node)
        self.generic_visit(node)

    def _check_dynamic_import(self, node: ast.Call) -> None:
        if node.args and isinstance(node.args[0], ast.Constant):
            name = node.args[0].value
            if isinstance(name, str):
                self._check_module(node, name)


def check_source(source: str, relpath: str) -> list[Violation]:
    """Layering violations in `source`, the text of the file at repo-relative `relpath`."""
    try:
        tree = ast.parse(source, filename=relpath)
    except SyntaxError as exc:
        return [Violation(relpath, exc.lineno or 0, f"cannot parse: {exc.msg}")]
    checker = _Checker(relpath)
    checker.visit(tree)
    return sorted(checker.violations, key=lambda v: (v.line, v.message))


def _core_files() -> list[str]:
    files: list[str] = []
    for package in CORE_PACKAGES:
        root = REPO_ROOT / package
        if root.is_dir():
            files += [
                p.relative_to(REPO_ROOT).as_posix()
                for p in root.rglob("*.py")
                if "__pycache__" not in p.parts
            ]
    return sorted(files)


@pytest.mark.parametrize("relpath", _core_files())
def test_core_module_is_pure(relpath: str) -> None:
    source = (REPO_ROOT / relpath).read_text(encoding="utf-8")
    violations = check_source(source, relpath)
    assert not violations, "layering violations:\n" + "\n".join(map(str, violations))


# --- self-checks: the checker must actually catch things --------------------------------

BAD_SOURCE = """\
import os
import os.path as osp
from streams.app import app
import faust
from kafka.admin import KafkaAdminClient
import pathlib
from yaml import safe_load
from datetime import datetime, date
import datetime as dt
import time
from ..streams import cli
from .. import streams


def f(x):
    print(x)
    a = datetime.now()
    b = datetime.utcnow()
    c = dt.datetime.today()
    d = date.today()
    e = time.time()
    with open("x") as fh:
        return fh.read()


stamp = datetime.now
mod = __import__("socket")
import uuid
ident = uuid.uuid4()
"""


def _by_line(violations: list[Violation]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for v in violations:
        out.setdefault(v.line, []).append(v.message)
    return out


def test_checker_reports_violations() -> None:
    found = _by_line(check_source(BAD_SOURCE, "rules/engine.py"))
    expected = {
        1: "'os'",
        2: "'os.path'",
        3: "'streams.app'",
        4: "'faust'",
        5: "'kafka.admin'",
        6: "'pathlib'",
        7: "'yaml'",
        10: "'time'",
        11: "'streams'",
        12: "'streams'",
        16: "print()",
        17: "datetime.now",
        18: "datetime.utcnow",
        19: "dt.datetime.today",
        20: "date.today",
        21: "time.time",
        22: "open()",
        26: "datetime.now",
        27: "'socket'",
        29: "uuid.uuid4",
    }
    for line, needle in expected.items():
        assert any(needle in msg for msg in found.get(line, [])), (line, needle, found)
    # the plain datetime imports themselves are fine
    assert 8 not in found and 9 not in found and 28 not in found, found


def test_checker_reports_nested_and_aliased_imports() -> None:
    src = (
        "def g():\n"
        "    import asyncio\n"
        "    from threading import Lock\n"
        "    import random as rnd\n"
        "    from urllib.parse import urlparse\n"
        "    import http.client\n"
        "    import prometheus_client, redis.asyncio, aiokafka, mode, requests, subprocess\n"
    )
    found = _by_line(check_source(src, "models/tier.py"))
    assert set(found) == {2, 3, 4, 5, 6, 7}, found
    assert len(found[7]) == 6, found[7]


def test_checker_allows_yaml_only_in_the_policy_parser_and_files_nowhere() -> None:
    src = (
        "import yaml\n"
        "def parse(text: str):\n"
        "    return yaml.safe_load(text)\n"
    )
    assert check_source(src, POLICY_LOADER) == []
    assert {v.line for v in check_source(src, "rules/other.py")} == {1}
    reading = "from pathlib import Path\ndef load(p):\n    return open(p).read()\n"
    assert {v.line for v in check_source(reading, POLICY_LOADER)} == {1, 3}
    # the loader is still pure otherwise
    assert check_source("import os\nprint(1)\n", POLICY_LOADER) != []


def test_checker_forbids_models_importing_rules() -> None:
    src = "from rules.engine import apply\nimport rules.compiled\nfrom .. import rules\n"
    assert {v.line for v in check_source(src, "models/state.py")} == {1, 2, 3}
    assert check_source(src.splitlines()[0], "rules/replay.py") == []


def test_checker_accepts_pure_code() -> None:
    src = (
        "from __future__ import annotations\n"
        "from dataclasses import dataclass\n"
        "from datetime import datetime, timedelta, timezone\n"
        "from decimal import Decimal\n"
        "from typing import TYPE_CHECKING\n"
        "from .tier import Tier\n"
        "from . import events\n"
        "from models.events import Purchase\n"
        "import timeit_is_not_time\n"
        "import uuid\n"
        "NS = uuid.uuid5(uuid.NAMESPACE_URL, 'tierstream')\n"
        "\n"
        "@dataclass(frozen=True)\n"
        "class Window:\n"
        "    start: datetime\n"
        "    def end(self) -> datetime:\n"
        "        return self.start + timedelta(days=365)\n"
        "    def utc(self) -> datetime:\n"
        "        return self.start.astimezone(timezone.utc)\n"
        "    def parse(self, s: str) -> datetime:\n"
        "        return datetime.fromisoformat(s)\n"
    )
    assert check_source(src, "rules/window.py") == []


def test_checker_reports_unparsable_file() -> None:
    [v] = check_source("def broken(:\n", "models/broken.py")
    assert v.line == 1 and "cannot parse" in v.message
