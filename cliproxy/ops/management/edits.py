"""The new value a PUT, PATCH or DELETE gives one config key.

Strategy: pure functions from (field, method, body, the document on disk) to the key's
whole new value (``writer.DELETE`` to remove it) plus extra members for the answer; the
key is then validated and written as a whole (``changes``), so an edit here never has to
be valid itself. Edits start from the *document* (``env:`` references unresolved), never
from the views, so nothing masked can slip into the file that way; and a value sent by
the client that carries a masked secret anywhere (``masking.is_masked``: ``…`` or
``FULL_MASK``, nested entries included) is refused before anything else.

List fields (``fields.Entries``):
- PUT replaces the list; PATCH takes one entry or a list of them, each replacing the
  entry with the same name or appended; DELETE without a body empties the key (back to
  the default), with ``{"value": [...]}`` removes the entries named or numbered.
- One entry (``/<field>/<index>`` or ``/<field>/<name>``): PUT replaces it, PATCH merges
  the members given into it (a member set to null is removed), DELETE removes it.
"""

import re
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote

from cliproxy.config.writer import DELETE
from cliproxy.errors import BadRequest, NotFound
from cliproxy.masking import is_masked
from cliproxy.ops.management.fields import DELETE as DELETE_METHOD
from cliproxy.ops.management.fields import PATCH, PUT, Entries, Field

MASKED_REFUSED = "a masked secret cannot be written back; send the real value (or an env:NAME reference)"

Answer = Dict[str, Any]

# An entry's index in a path: a few ASCII digits (nobody configures a billion entries).
_INDEX = re.compile(r"^[0-9]{1,9}$")


def masked_strings(value: Any, path: str) -> Iterator[str]:
    """The JSON path of every string in ``value`` that is a masked secret."""
    if isinstance(value, str):
        if is_masked(value):
            yield path
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for found in masked_strings(item, "%s[%d]" % (path, i)):
                yield found
    elif isinstance(value, dict):
        for key, item in value.items():
            for found in masked_strings(item, "%s.%s" % (path, key)):
                yield found


def refuse_masked(value: Any, path: str) -> None:
    """Raise ``BadRequest`` naming the first place in ``value`` holding a masked secret."""
    for found in masked_strings(value, path):
        raise BadRequest("%s: %s" % (found, MASKED_REFUSED))


def document_value(document: Dict[str, Any], field: Field) -> Any:
    """What the document holds at ``field``'s place (None when absent)."""
    node = document  # type: Any
    for key in field.place:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def document_list(document: Dict[str, Any], field: Field) -> List[Any]:
    """The list the document holds at ``field``'s place (``[]`` when absent)."""
    value = document_value(document, field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("%s: the config file holds no list here; use PUT" % field.path)
    return list(value)


# ---- the whole key ------------------------------------------------------------------------


def field_change(field: Field, method: str, body: Optional[dict], document: dict) -> Tuple[Any, Answer]:
    """The value ``field`` gets (``DELETE`` removes it) and extra answer members.
    Raises ``BadRequest``."""
    value = None if body is None else body["value"]
    if method == PUT:
        if value is None:
            raise BadRequest('%s: PUT takes {"value": ...}; use DELETE to restore the default' % field.path)
        refuse_masked(value, field.path)
        return value, {}
    if method == PATCH:
        if value is None:
            raise BadRequest('%s: PATCH takes {"value": <entry or list of entries>}' % field.path)
        refuse_masked(value, field.path)
        return _patched(field, document_list(document, field), value), {}
    if body is None:
        return DELETE, {}
    if field.entries is None:
        raise BadRequest("%s: DELETE takes no body" % field.path)
    current = document_list(document, field)
    kept = _without(field, current, value)
    return kept, {"removed": len(current) - len(kept)}


def _patched(field: Field, current: List[Any], value: Any) -> List[Any]:
    """``current`` with each entry of ``value`` (one entry or a list) replacing the entry
    of the same name, or appended; order is kept."""
    entries = field.entries  # type: Entries
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        name = entries.name_of(item)
        if name is None:
            need = 'a string "%s"' % entries.name_key if entries.objects else "a string"
            raise BadRequest("%s: PATCH entry %d needs %s" % (field.path, i, need))
        for j, old in enumerate(current):
            if entries.name_of(old) == name:
                current[j] = item
                break
        else:
            current.append(item)
    return current


def _without(field: Field, current: List[Any], value: Any) -> List[Any]:
    """``current`` without the entries ``value`` lists, by index (a number) or by name
    (a string); items that match nothing are ignored (the answer's ``removed`` tells)."""
    entries = field.entries  # type: Entries
    if not isinstance(value, list) or not all(_is_index(v) or isinstance(v, str) for v in value):
        raise BadRequest('%s: DELETE takes {"value": [index or name, ...]} or no body' % field.path)
    refuse_masked(value, field.path)
    indexes = {v for v in value if _is_index(v)}
    names = {entries.normal(v) for v in value if isinstance(v, str)}
    return [
        entry
        for i, entry in enumerate(current)
        if i not in indexes and entries.name_of(entry) not in names
    ]


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ---- one entry ----------------------------------------------------------------------------


def find_entry(field: Field, entries: List[Any], ref: str) -> int:
    """The index of the entry ``ref`` (a path segment: an index, or a percent-encoded
    name when the field allows it) names in ``entries``. Raises ``NotFound``."""
    spec = field.entries  # type: Entries
    if _INDEX.match(ref):
        if int(ref) < len(entries):
            return int(ref)
    elif spec.by_name:
        name = spec.normal(unquote(ref))
        for i, entry in enumerate(entries):
            if spec.name_of(entry) == name:
                return i
    raise NotFound("%s: no entry %s" % (field.path, _shown_ref(ref, spec)))


def _shown_ref(ref: str, spec: Entries) -> str:
    # A name may be quoted in an error; anything else (a key, perhaps) never is.
    if _INDEX.match(ref):
        return "[%s]" % ref
    return '"%s"' % unquote(ref)[:100] if spec.by_name else "(not an index)"


def entry_change(
    field: Field, ref: str, method: str, body: Optional[dict], document: dict
) -> Tuple[List[Any], Answer, str]:
    """The list ``field`` gets when the entry ``ref`` names is replaced (PUT), merged
    into (PATCH) or removed (DELETE); extra answer members; and the entry's JSON path.
    Raises ``BadRequest`` or ``NotFound``."""
    current = document_list(document, field)
    index = find_entry(field, current, ref)
    path = "%s[%d]" % (field.path, index)
    value = None if body is None else body["value"]
    if method == DELETE_METHOD:
        if body is not None:
            raise BadRequest("%s: DELETE of one entry takes no body" % path)
        del current[index]
        return current, {"removed": 1}, path
    if value is None:
        raise BadRequest('%s: %s takes {"value": ...}' % (path, method))
    refuse_masked(value, path)
    if method == PUT:
        current[index] = value
    else:
        current[index] = _merged(current[index], value, path)
    return current, {}, path


def _merged(entry: Any, members: Any, path: str) -> Dict[str, Any]:
    """``entry`` with ``members`` set in it (a null member removed); new members last."""
    if not isinstance(members, dict):
        raise BadRequest("%s: PATCH takes {\"value\": {member: value, ...}}" % path)
    if not isinstance(entry, dict):
        raise BadRequest("%s: the config file holds no object here; use PUT" % path)
    merged = dict(entry)
    for key, value in members.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


__all__ = [
    "MASKED_REFUSED",
    "document_list",
    "document_value",
    "entry_change",
    "field_change",
    "find_entry",
    "masked_strings",
    "refuse_masked",
]
