"""Write a changed config document back to its file, atomically (SPEC §3.3).

Strategy: the management API changes the *document* (the JSON as the user wrote it, with
``env:`` references unresolved), never a ``Config``; ``update_ampcode`` returns a changed
deep copy in which every other key keeps its value and its place. ``write_document``
serialises it to a temporary file in the same directory, flushes it to disk and renames it
over the original (``os.replace`` is atomic on POSIX and Windows), so a reader — the hot
reload watcher included — sees the old file or the new one, never half of one. The file's
permission bits (and, when allowed, owner) are kept: a config holding secrets stays 0600.
A symlinked config file is written through the link, which stays in place.
"""

import copy
import json
import os
import stat
import tempfile
from typing import Any, Dict


class _Delete(object):
    """The value that removes a key in ``update_ampcode``."""

    def __repr__(self):
        return "DELETE"


DELETE = _Delete()


def serialise(document: Any) -> bytes:
    """The file's bytes: 2-space indent, UTF-8 (non-ASCII kept readable), final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_document(path: str, document: Dict[str, Any]) -> None:
    """Replace the file at ``path`` by ``document`` in one atomic rename.

    Keeps the original's permission bits (a new file gets 0600). Raises ``OSError`` when
    the directory is not writable or the disk is full; the original is then untouched and
    no temporary file is left behind. Raises ``TypeError``/``ValueError`` for a document
    that is not JSON-serialisable, before anything is written.
    """
    data = serialise(document)
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    try:
        original = os.stat(target)
    except FileNotFoundError:
        original = None
    fd, temp = tempfile.mkstemp(
        prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if original is not None:
            os.chmod(temp, stat.S_IMODE(original.st_mode))
            _keep_owner(temp, original)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _keep_owner(temp: str, original: os.stat_result) -> None:
    # Only root may give a file away; anyone else writes files they own already.
    if not hasattr(os, "chown"):
        return
    if (original.st_uid, original.st_gid) == (os.getuid(), os.getgid()):
        return
    try:
        os.chown(temp, original.st_uid, original.st_gid)
    except OSError:
        pass


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def update_ampcode(document: Dict[str, Any], changes: Dict[str, Any]) -> Dict[str, Any]:
    """A deep copy of ``document`` with ``ampcode.<key>`` set to each value of ``changes``
    (removed when the value is ``DELETE``).

    Every other key keeps its value and its position; a changed key keeps its position, a
    new one goes last, and a missing ``ampcode`` section is added at the end. The input is
    not modified. Raises ``ValueError`` when the document or its ``ampcode`` is not an
    object.
    """
    if not isinstance(document, dict):
        raise ValueError("the config document is not a JSON object")
    result = copy.deepcopy(document)
    section = result.setdefault("ampcode", {})
    if not isinstance(section, dict):
        raise ValueError("ampcode is not a JSON object")
    for key, value in changes.items():
        if value is DELETE:
            section.pop(key, None)
        else:
            section[key] = copy.deepcopy(value)
    return result
