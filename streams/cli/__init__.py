"""The `tierstream` command line: its entry point and the modules of its commands."""
