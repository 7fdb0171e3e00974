"""Every test runs the engine's current sources: a module compiled in place before its source
last changed stops the run (streams/engine_build.py)."""

from streams import engine_build

engine_build.check()

from tests import kafka_python_fix  # noqa: E402  (after the build check, which imports nothing)

kafka_python_fix.apply()
