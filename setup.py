"""The engine's hot modules compiled to C with mypyc when TIERSTREAM_COMPILE=1 (measured in
docs/engine.md#the-compiled-build).

Without it the package is pure Python (everything else is declared in pyproject.toml). .ci/run
runs every test against the compiled build and the unit tests against both.
"""

import os

from setuptools import setup

# The modules every event and wake-up runs through, with most of the engine's time; the rest of
# rules/ does little per event (docs/engine.md, "The compiled build").
COMPILED = [f"rules/{name}.py" for name in (
    "admission", "conditions", "decisions", "due_index", "engine", "history", "horizon",
    "metrics", "partition", "compiled", "clock", "followup", "replay")]

extensions = []
if os.environ.get("TIERSTREAM_COMPILE") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit("TIERSTREAM_COMPILE=1 needs mypy and a C compiler where the package is "
                         "built: pip install 'mypy>=2.4' 'setuptools>=77', then build without "
                         "isolation (pip wheel --no-build-isolation .)") from None

    # --follow-imports=silent: the modules they import (models/, the rest of rules/) stay
    # Python and are type-checked by how they are used, not compiled.
    extensions = mypycify(["--follow-imports=silent", "--ignore-missing-imports", *COMPILED],
                          opt_level="3")

setup(ext_modules=extensions)
