"""The error-request files of ``logs-dir``: list them, read one, delete one or all.

Strategy: the API reaches only the files ``requestlog`` writes, and only by a plain name.
A name must be made of letters, digits, ``.``, ``_`` and ``-``, start with a letter or a
digit, and be an error-request file name (``requestlog``'s own test), so no separator,
no ``..``, no hidden or other file of the directory can be named. The file is then opened
without following a symbolic link and must be a regular file: a link planted in
``logs-dir`` leads nowhere. Whatever the files hold was masked when they were written.
"""

import datetime
import errno
import os
import re
import stat
from typing import Any, Dict, List

from cliproxy.errors import BadRequest, NotFound, ProxyError
from cliproxy.ops.requestlog import _is_error_file as is_error_file

# Error files hold capped bodies (64 KiB each); anything far larger is not one of ours.
MAX_FILE_BYTES = 8 * 1024 * 1024

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class FileTooLarge(ProxyError):
    status = 413
    error_type = "request_too_large"


def _checked(name: str) -> str:
    """``name`` when it may name an error-request file; raises ``BadRequest``."""
    if not _NAME.match(name) or not is_error_file(name):
        raise BadRequest("not an error-request file name (error-....json in logs-dir)")
    return name


def _regular_files(directory: str) -> List[os.DirEntry]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []  # nothing failed yet: the directory is made with the first file
    except OSError as exc:
        raise ProxyError("cannot list logs-dir %s: %s" % (directory, exc.strerror or exc))
    return [
        entry
        for entry in entries
        if _NAME.match(entry.name) and is_error_file(entry.name) and entry.is_file(follow_symlinks=False)
    ]


def list_files(directory: str) -> List[Dict[str, Any]]:
    """Name, size and modification time (UTC, ISO 8601) of each error-request file,
    newest first."""
    found = []
    for entry in _regular_files(directory):
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # rotated away meanwhile
        found.append((info.st_mtime_ns, entry.name, info.st_size))
    found.sort(reverse=True)
    return [
        {"name": name, "size": size, "modified": _iso(mtime_ns)}
        for mtime_ns, name, size in found
    ]


def read_file(directory: str, name: str) -> bytes:
    """The bytes of the error-request file ``name``. Raises ``BadRequest`` (bad name),
    ``NotFound`` or ``FileTooLarge``."""
    path = os.path.join(directory, _checked(name))
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError as exc:
        raise _missing(name, exc)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotFound("no error-request file %s" % name)
        if info.st_size > MAX_FILE_BYTES:
            raise FileTooLarge("error-request file %s is too large to serve" % name)
        return handle.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]


def delete_file(directory: str, name: str) -> None:
    """Remove the error-request file ``name``. Raises ``BadRequest`` or ``NotFound``."""
    path = os.path.join(directory, _checked(name))
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise _missing(name, exc)
    if not stat.S_ISREG(info.st_mode):
        raise NotFound("no error-request file %s" % name)
    try:
        os.unlink(path)
    except OSError as exc:
        raise _missing(name, exc)


def delete_all(directory: str) -> int:
    """Remove every error-request file; returns how many were removed."""
    removed = 0
    for entry in _regular_files(directory):
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # rotated away meanwhile
        except OSError as exc:
            raise _missing(entry.name, exc)
        removed += 1
    return removed


def _missing(name: str, exc: OSError) -> ProxyError:
    if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
        return NotFound("no error-request file %s" % name)
    return ProxyError("cannot use error-request file %s: %s" % (name, exc.strerror or exc))


def _iso(mtime_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(mtime_ns / 1e9, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


__all__ = ["FileTooLarge", "delete_all", "delete_file", "list_files", "read_file"]
