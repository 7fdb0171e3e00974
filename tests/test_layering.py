"""Architecture guard: the pure core (models/, rules/) does no I/O, reads no clock and never
imports the streaming layer; the streaming layer (streams/) keeps to its layout by role.

Every .py file under models/ and rules/ is parsed with ``ast`` (never imported) and checked for
forbidden imports and forbidden calls. Time, randomness and I/O enter the core only as
arguments (e.g. an event's timestamp), which keeps it deterministic and testable.

The one exception is rules/policy_file.py, which may import ``yaml`` to parse policy text;
reading the file is streams/policies.py's job.

Every .py file under streams/ is parsed the same way and its imports (lazy and TYPE_CHECKING ones
included) checked against the layout: each role package imports only the roles below it
(ROLE_IMPORTS), faust and its transport are imported only by the worker, and faust's internals
(its submodules, and mode underneath it) only by streams/worker/faust_fixes.py, which checks the
faust version it was written for. The check sees imports only, not attribute access.
"""

from __future__ import annotations

import ast
import functools
import importlib.machinery
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
        "urllib.request",  # (urllib.parse: string functions)
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
        "    from urllib.request import urlopen\n"
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


# --- streams/: the layout by role ---------------------------------------------------------------

SHELL = "streams"
# The role packages (and shared modules) of streams/, and which of the others each may import;
# a module may always import its own role, models/ and rules/. Kafka clients and topics sit at
# the bottom, the CLI at the top: nothing but the CLI imports the worker, and no runtime role
# imports the CLI or the dev tooling.
ROLE_IMPORTS: dict[str, frozenset[str]] = {
    "streams": frozenset(),
    "streams.settings": frozenset(),
    "streams.model_file": frozenset(),
    "streams.collector": frozenset(),
    "streams.engine_build": frozenset(),
    "streams.http": frozenset(),
    "streams.policies": frozenset({"streams.model_file"}),
    "streams.kafka": frozenset({"streams.settings"}),
    "streams.view": frozenset({"streams.settings", "streams.kafka"}),
    "streams.ingest": frozenset({"streams.settings", "streams.kafka", "streams.http"}),
    "streams.worker": frozenset(
        {"streams.settings", "streams.collector", "streams.engine_build", "streams.policies",
         "streams.kafka", "streams.view", "streams.http"}
    ),
    # The demo follows outputs the way `tierstream tail` does (streams.cli.tail) and runs the
    # worker as a process (`python -m streams.cli worker`), never in its own.
    "streams.dev": frozenset(
        {"streams.settings", "streams.policies", "streams.kafka", "streams.view", "streams.cli"}
    ),
    "streams.cli": frozenset(
        {"streams.settings", "streams.model_file", "streams.collector", "streams.engine_build",
         "streams.policies", "streams.kafka", "streams.view", "streams.worker", "streams.dev",
         "streams.ingest"}
    ),
}
# The faust runtime and its transport: only the worker runs them.
FAUST_MODULES = frozenset({"faust", "mode", "aiokafka"})
WORKER = "streams.worker"
# faust's public API (the top-level package) for its broker credentials (faust_credentials).
FAUST_PUBLIC_ALLOWED = frozenset({"streams/kafka/clients.py"})
# Names of faust submodules its documentation tells applications to import ("Web Views").
FAUST_PUBLIC_NAMES = {"faust.web": frozenset({"View"})}
# Every touch of faust's internals: its submodules, and mode (the service framework under it).
FAUST_FIXES = "streams/worker/faust_fixes.py"


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # the module imported from (`a.b` of `from a.b import c`)
    names: tuple[str, ...]  # the names taken from it (empty for `import a.b`)

    @property
    def targets(self) -> list[str]:
        """Everything this import may name: `a.b`, and `a.b.c` for `from a.b import c`."""
        return [self.module, *(f"{self.module}.{name}" for name in self.names)]


def imports_of(source: str, relpath: str) -> list[Import]:
    """Every import in `source` (at any depth), relative ones resolved against `relpath`."""
    package = relpath[: -len(".py")].split("/")[:-1]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=relpath)):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: max(len(package) - (node.level - 1), 0)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = tuple(a.name for a in node.names if a.name != "*")
            found.append(Import(node.lineno, module, names))
    return sorted(found, key=lambda i: i.line)


def role_of(relpath: str) -> str:
    """The role of a module under streams/: its sub-package, or the shared module itself."""
    parts = relpath[: -len(".py")].split("/")
    if len(parts) > 2:
        return ".".join(parts[:2])
    return SHELL if parts[-1] == "__init__" else ".".join(parts)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@functools.cache
def _faust_submodules() -> frozenset[str]:
    """The names of faust's submodules, read from its directory (faust is not imported, and
    sys.modules is not asked: the faust module there, once imported, has no __spec__)."""
    spec = importlib.machinery.PathFinder.find_spec("faust")
    assert spec is not None and spec.submodule_search_locations, "faust is not installed"
    names: set[str] = set()
    for location in spec.submodule_search_locations:
        for entry in Path(location).iterdir():
            if entry.suffix == ".py" or (entry / "__init__.py").exists():
                names.add(entry.stem if entry.suffix == ".py" else entry.name)
    return frozenset(names - {"__init__", "__main__"})


def _is_faust_internal(imported: Import, faust_submodules: frozenset[str]) -> bool:
    root = imported.module.split(".")[0]
    if root == "mode":
        return True
    if root != "faust":
        return False
    if imported.module in FAUST_PUBLIC_NAMES:
        return not set(imported.names) <= FAUST_PUBLIC_NAMES[imported.module]
    return imported.module != "faust" or any(n in faust_submodules for n in imported.names)


def check_shell_source(
    source: str, relpath: str, faust_submodules: frozenset[str] = frozenset()
) -> list[Violation]:
    """Layout violations in the streams/ module at repo-relative `relpath`."""
    try:
        found = imports_of(source, relpath)
    except SyntaxError as exc:
        return [Violation(relpath, exc.lineno or 0, f"cannot parse: {exc.msg}")]
    role = role_of(relpath)
    allowed = ROLE_IMPORTS.get(role)
    if allowed is None:
        return [Violation(relpath, 0, f"{role} is not a role of ROLE_IMPORTS: add it there")]
    own = () if role == SHELL else (role,)
    violations: list[Violation] = []
    for imported in found:
        root = imported.module.split(".")[0]
        # `from streams.kafka import clients` names the module streams.kafka.clients (a role
        # package's __init__ holds only its docstring), so each name is a target of its own
        package = (REPO_ROOT / imported.module.replace(".", "/")).is_dir()
        targets = imported.targets[1:] if package and imported.names else [imported.module]
        for target in targets if root == SHELL else []:
            if not any(_under(target, a) for a in (*own, *allowed)):
                violations.append(Violation(relpath, imported.line,
                                            f"{role} imports {target} (allowed: "
                                            f"{', '.join(sorted(allowed)) or 'no role'})"))
        if root in FAUST_MODULES and role != WORKER and not (
                imported.module == "faust" and relpath in FAUST_PUBLIC_ALLOWED):
            violations.append(Violation(relpath, imported.line,
                                        f"imports {imported.module} outside {WORKER}"))
        if relpath != FAUST_FIXES and _is_faust_internal(imported, faust_submodules):
            names = f" ({', '.join(imported.names)})" if imported.names else ""
            violations.append(Violation(relpath, imported.line,
                                        f"faust internals {imported.module}{names} outside "
                                        f"{FAUST_FIXES}"))
    return violations


def _shell_files() -> list[str]:
    root = REPO_ROOT / SHELL
    return sorted(p.relative_to(REPO_ROOT).as_posix() for p in root.rglob("*.py")
                  if "__pycache__" not in p.parts)


@pytest.mark.parametrize("relpath", _shell_files())
def test_shell_module_keeps_to_its_role(relpath: str) -> None:
    source = (REPO_ROOT / relpath).read_text(encoding="utf-8")
    violations = check_shell_source(source, relpath, _faust_submodules())
    assert not violations, "layout violations:\n" + "\n".join(map(str, violations))


def test_every_role_package_is_known_and_has_a_docstring() -> None:
    packages = sorted(p.parent for p in (REPO_ROOT / SHELL).rglob("__init__.py")
                      if "__pycache__" not in p.parts)
    names = {".".join(p.relative_to(REPO_ROOT).parts) for p in packages}
    assert names == {r for r in ROLE_IMPORTS if (REPO_ROOT / r.replace(".", "/")).is_dir()}
    for package in packages:
        tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{package}: say what the package holds"
        assert len(tree.body) == 1, f"{package}/__init__.py: a docstring only"


def test_faust_fixes_checks_the_faust_version_it_was_written_for() -> None:
    tree = ast.parse((REPO_ROOT / FAUST_FIXES).read_text(encoding="utf-8"))
    assigned = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    versions = {_dotted(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "WRITTEN_FOR" in assigned and "faust.__version__" in versions


def test_shell_checker_reports_violations() -> None:
    faust_submodules = frozenset({"streams", "tables", "transport"})
    worker = (
        "from streams.cli import tail\n"
        "from streams.dev.local_kafka import LocalKafka\n"
        "from streams.kafka import clients\n"
        "from streams.view.redis_view import RedisView\n"
        "from . import population\n"
        "import faust\n"
        "from faust.tables.recovery import Recovery\n"
        "from faust import tables\n"
        "from mode import Service\n"
        "from aiokafka.client import AIOKafkaClient\n"
        "def f():\n"
        "    from streams import cli\n"
    )
    found = _by_line(check_shell_source(worker, "streams/worker/runtime.py", faust_submodules))
    assert set(found) == {1, 2, 7, 8, 9, 12}, found
    assert "streams.cli.tail" in found[1][0] and "faust internals" in found[7][0]
    fixes = "import faust\nfrom faust.tables.recovery import Recovery\nfrom mode import Service\n"
    assert check_shell_source(fixes, FAUST_FIXES, faust_submodules) == []
    assert check_shell_source("from faust import App\n", "streams/worker/shutdown.py",
                              faust_submodules) == []
    kafka = "from streams.worker import runtime\nimport faust\nimport aiokafka\n"
    assert {v.line for v in check_shell_source(kafka, "streams/kafka/topics.py")} == {1, 2, 3}
    assert {v.line for v in check_shell_source(kafka, "streams/kafka/clients.py")} == {1, 3}
    view = "from streams.cli.main import main\nfrom ..kafka.clients import admin\n"
    assert {v.line for v in check_shell_source(view, "streams/view/redis_view.py")} == {1}
    shared = "from streams import model_file\nfrom streams.cli import replay_job\n"
    assert {v.line for v in check_shell_source(shared, "streams/policies.py")} == {2}
    assert {v.line for v in check_shell_source(shared, "streams/settings.py")} == {1, 2}
    cli = "from streams.worker import runtime\nfrom streams.dev import demo\nimport faust\n"
    assert {v.line for v in check_shell_source(cli, "streams/cli/main.py")} == {3}
    assert {v.line for v in check_shell_source(cli, "streams/__init__.py")} == {1, 2, 3}
    assert check_shell_source("x = 1\n", "streams/new/thing.py")[0].line == 0
