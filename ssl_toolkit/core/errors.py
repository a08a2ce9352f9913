"""Errors a user can act on. The CLI prints their message as one line and exits 1."""


class UserError(Exception):
    """Bad input or options: the message names the file or option at fault."""


class DataError(UserError, ValueError):
    """An input file (audio, labels, dataset layout) is unusable."""


class ArtifactError(UserError, RuntimeError):
    """A stage input or output is missing, damaged, of the wrong kind, or would be overwritten."""
