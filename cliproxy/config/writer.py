"""Write a changed config document back to its file, atomically (SPEC §3.3).

Strategy: the management API changes the *document* (the JSON as the user wrote it, with
``env:`` references unresolved), never a ``Config``; ``update_document`` (and its
shorthand ``update_ampcode``) returns a changed deep copy in which every other key keeps
its value and its place. ``write_document``
serialises it to a temporary file in the same directory, flushes it to disk and renames it
over the original (``os.replace`` is atomic on POSIX and Windows), so a reader — the hot
reload watcher included — sees the old file or the new one, never half of one. The file's
permission bits (and, when allowed, owner) are kept: a config holding secrets stays 0600.
A symlinked config file is written through the link, which stays in place.
"""

import copy
import json
from typing import Any, Dict, Optional

from cliproxy.files import replace_file


class _Delete(object):
    """The value that removes a key in ``update_ampcode``."""

    def __repr__(self):
        return "DELETE"


DELETE = _Delete()


def serialise(document: Any) -> bytes:
    """The file's bytes: 2-space indent, UTF-8 (non-ASCII kept readable), final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_document(path: str, document: Dict[str, Any]) -> None:
    """Replace the file at ``path`` by ``document`` in one atomic rename
    (``files.replace_file``: permission bits and owner kept, a new file gets 0600).

    Raises ``OSError`` when the directory is not writable or the disk is full; the original
    is then untouched. Raises ``TypeError``/``ValueError`` for a document that is not
    JSON-serialisable, before anything is written.
    """
    replace_file(path, serialise(document))


def update_document(
    document: Dict[str, Any], changes: Dict[str, Any], section: Optional[str] = None
) -> Dict[str, Any]:
    """A deep copy of ``document`` with each key of ``changes`` set to its value (removed
    when the value is ``DELETE``): top-level keys, or the keys of the object ``section``
    names when given.

    Every other key keeps its value and its position; a changed key keeps its position, a
    new one goes last, and a missing ``section`` is added at the end. The input is not
    modified. Raises ``ValueError`` when the document or its ``section`` is not an object.
    """
    if not isinstance(document, dict):
        raise ValueError("the config document is not a JSON object")
    result = copy.deepcopy(document)
    target = result
    if section is not None:
        target = result.setdefault(section, {})
        if not isinstance(target, dict):
            raise ValueError("%s is not a JSON object" % section)
    for key, value in changes.items():
        if value is DELETE:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)
    return result


def update_ampcode(document: Dict[str, Any], changes: Dict[str, Any]) -> Dict[str, Any]:
    """``update_document(document, changes, "ampcode")``: the keys of the ``ampcode``
    section changed, a missing section added at the end."""
    return update_document(document, changes, "ampcode")
