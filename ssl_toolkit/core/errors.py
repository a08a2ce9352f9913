"""Errors a user can act on. The CLI prints their message as one line and exits 1."""


class UserError(Exception):
    """Bad input or options: the message names the file or option at fault."""


class DataError(UserError, ValueError):
    """An input file (audio, labels, dataset layout) is unusable."""


class ArtifactError(UserError, RuntimeError):
    """A stage input or output is missing, damaged, of the wrong kind, or would be overwritten."""


#: What an OS error about a path means, in words (see :func:`path_error_line`).
_PATH_ERRNOS = {
    "ENAMETOOLONG": "a name in this path is longer than the file system allows (255 bytes)",
    "ENOTDIR": "a component of this path is a file, not a directory",
    "ELOOP": "too many levels of symbolic links: a symbolic link loop",
    "ENOENT": "no such file or directory",
    "EISDIR": "is a directory, not a file",
    "EEXIST": "already exists",
    "ENOTEMPTY": "is a directory that is not empty",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EROFS": "the file system is read-only",
    "ENOSPC": "no space left on the device",
    "EDQUOT": "disk quota exceeded",
    "EIO": "input/output error (a failing disk or network share?)",
    "EXDEV": "cannot move across file systems",
    "EBUSY": "the device or resource is busy",
    "EFBIG": "the file is too large for the file system",
    "ETXTBSY": "the file is busy",
}


def describe_os_error(e: OSError) -> str:
    """What an :class:`OSError` means, in a few words (``strerror`` for the rare ones)."""
    import errno

    name = errno.errorcode.get(e.errno or 0, "")
    return _PATH_ERRNOS.get(name) or (e.strerror or type(e).__name__).lower()


def path_error_line(e: BaseException) -> str | None:
    """One line for an OS error about a path (``PATH: what is wrong``), or None.

    An :class:`OSError` that names a file is a problem of the user's environment (a name too
    long, a file where a directory is expected, a symbolic link loop, a missing parent, a full
    or read-only disk): the CLI reports it in one line. One without a file name is not
    described here (None), so that a genuine bug still ends in a traceback. Python 3.11's
    ``Path.resolve`` reports a symbolic link loop as a RuntimeError, translated here as well.
    """
    if isinstance(e, RuntimeError) and str(e).startswith("Symlink loop from "):
        where = str(e)[len("Symlink loop from ") :].strip("'\"")
        return f"{where}: {_PATH_ERRNOS['ELOOP']}"
    if not isinstance(e, OSError) or e.filename is None:
        return None
    where = _name(e.filename)
    if e.filename2 is not None:
        where += f" -> {_name(e.filename2)}"
    return f"{where}: {describe_os_error(e)}"


def _name(filename) -> str:
    import os

    return os.fsdecode(filename) if isinstance(filename, (str, bytes)) else str(filename)
