"""Every test runs the engine's current sources: a module compiled in place before its source
last changed stops the run (streams/engine_build.py)."""

from streams import engine_build

engine_build.check()
