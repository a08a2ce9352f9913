"""Errors a user can act on. The CLI prints their message as one line and exits 1."""


class UserError(Exception):
    """Bad input or options: the message names the file or option at fault."""


class DataError(UserError, ValueError):
    """An input file (audio, labels, dataset layout) is unusable."""
