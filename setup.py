"""The engine's hot modules compiled to C with mypyc when TIERSTREAM_COMPILE=1 (docs/engine.md).

Without it the package is pure Python (everything else is declared in pyproject.toml). Compiled,
the same sources run about 1.3-1.6 times faster; the whole test suite runs against both builds
(.ci/run).
"""

import os

from setuptools import setup

# The modules every event and wake-up runs through; the rest of rules/ is called once per
# policy load or builds its code at run time (rules/native.py), where compiling gains nothing.
COMPILED = [f"rules/{name}.py" for name in (
    "admission", "conditions", "decisions", "due_index", "engine", "history", "horizon",
    "metrics", "partition")]

extensions = []
if os.environ.get("TIERSTREAM_COMPILE") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit("TIERSTREAM_COMPILE=1 needs mypy and a C compiler where the package is "
                         "built: pip install '.[compile]' first, then build without isolation "
                         "(pip wheel --no-build-isolation .)") from None

    # --follow-imports=silent: the modules they import (models/, the rest of rules/) stay
    # Python and are type-checked by how they are used, not compiled.
    extensions = mypycify(["--follow-imports=silent", "--ignore-missing-imports", *COMPILED],
                          opt_level="3")

setup(ext_modules=extensions)
