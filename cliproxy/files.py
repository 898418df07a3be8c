"""Files cliproxy writes: atomic replacement, and keeping only the newest few.

Strategy: every file the proxy writes (the config on a management change, uploaded
threads in offline mode, error-request logs) is written to a temporary file in the same
directory, flushed, and renamed over its target, so a reader sees the old file or the
new one, never half of one. Directories that collect files keep the newest ``N`` by
modification time. Whether a directory will take files can be asked beforehand
(``directory_problem``) without creating anything, so ``check`` and start-up can say what
a request would otherwise only find out when it fails.
"""

import os
import stat
import tempfile
from typing import Optional


def replace_file(path: str, data: bytes) -> None:
    """Replace the file at ``path`` by ``data`` in one atomic rename.

    Keeps the original's permission bits (and, when allowed, owner); a new file gets 0600.
    A symlink is written through. Raises ``OSError`` when the directory is not writable or
    the disk is full; the original is then untouched and no temporary file is left behind.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    try:
        original = os.stat(target)
    except FileNotFoundError:
        original = None
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=directory)
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


def keep_newest(directory: str, matches, limit: int) -> None:
    """Remove the oldest files of ``directory`` whose names ``matches`` accepts, beyond the
    newest ``limit`` (by modification time, then name). ``limit <= 0`` keeps all."""
    if limit <= 0:
        return
    entries = []
    for name in os.listdir(directory):
        if matches(name):
            path = os.path.join(directory, name)
            try:
                entries.append((os.stat(path).st_mtime_ns, name, path))
            except FileNotFoundError:
                continue
    entries.sort()
    for _, _, path in entries[: max(0, len(entries) - limit)]:
        try:
            os.unlink(path)
        except OSError:
            pass


def directory_problem(path: str) -> Optional[str]:
    """Why files could not be created in the directory ``path``, or None when they could.

    A directory that does not exist yet is judged by its nearest existing ancestor, since
    it would be created on first use. Only looks (``access(2)``, which also reports a
    read-only mount, even to root); creates nothing.
    """
    probe = os.path.abspath(path)
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return "%s is not a directory" % probe
    if os.access(probe, os.W_OK | os.X_OK):
        return None
    return "%s is not writable (%s)" % (probe, _why_not_writable(probe))


def _why_not_writable(directory: str) -> str:
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # statvfs is POSIX only
        read_only = False
    return "read-only file system" if read_only else "permission denied"


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
