"""The ``ssl eval``, ``ssl baseline`` and ``ssl report`` stages: score a run, an export or a
classical method on a features artifact, and gather evaluations into one table."""
