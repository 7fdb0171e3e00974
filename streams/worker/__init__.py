"""The faust worker and its collaborators: faust fixes, populations, topic watch, shutdown, HTTP."""
