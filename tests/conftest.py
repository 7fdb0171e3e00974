"""Every test runs the engine's current sources: a module compiled in place before its source
last changed stops the run (streams/engine_build.py). kafka-python gets the fix of
tests/kafka_python_fix.py."""

from streams import engine_build
from tests import kafka_python_fix

engine_build.check()
kafka_python_fix.apply()
