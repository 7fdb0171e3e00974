"""`python -m streams.cli`: the `tierstream` command line."""

import sys

from streams.cli.main import main

sys.exit(main())
