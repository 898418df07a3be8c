"""Tool parameter schemas between JSON Schema and the subset Gemini's ``parameters`` takes.

Strategy: Gemini's ``FunctionDeclaration.parameters`` is a ``Schema`` object, "a select
subset of an OpenAPI 3.0 schema object", and the API answers 400 for any keyword outside
it (``Unknown name "$schema"``, ``"additionalProperties"``, ``"const"``...). Clients of
the other protocols declare tools in full JSON Schema, so ``to_gemini`` rebuilds each
schema node from an allow-list (``KEPT``) after rewriting what has a Gemini equivalent:

=====================================  ==============================================
JSON Schema                            Gemini ``parameters``
=====================================  ==============================================
``$ref`` to ``$defs``/``definitions``  the definition inlined (a cycle: ``object``)
``$schema``, ``$id``, ``$defs``,       dropped (not in the Schema object)
``definitions``, ``$comment``
``type: [T, "null"]``                  ``type: T`` + ``nullable: true``
``type: [T1, T2, ...]``                ``anyOf: [{type: T1}, {type: T2}, ...]``
``oneOf``                              ``anyOf``; a ``{type: null}`` branch becomes
                                       ``nullable: true``; one branch left is inlined
``allOf``                              its branches merged into the node
``const: v``                           ``enum: [v]``
``enum`` with a ``null``               the null removed, ``nullable: true``
``enum`` of non-strings                dropped (Gemini enums are strings)
``format``                             kept only where Gemini accepts it (``FORMATS``)
``required``                           only names the node's ``properties`` define
``properties: {}``                     dropped ("should be non-empty for OBJECT")
``array`` without ``items``            ``items: {type: string}`` (items is required)
``items: [S, ...]`` (tuple form)       ``items: S`` (the first)
``additionalProperties``,              dropped: no counterpart
``patternProperties``,
``exclusiveMinimum``/``Maximum``,
``default``, ``examples``, ``not``,
``if``/``then``/``else``, ``x-*``...
=====================================  ==============================================

``default`` is documented as accepted but ignored by Gemini; it is dropped rather than
risk a default whose type disagrees with the node's. ``title`` and ``example`` are kept.
``from_gemini`` goes the other way for a Gemini client's declarations: OpenAPI's
upper-case ``type`` names become JSON Schema's, and ``nullable`` a ``null`` type.

Schemas are client input: every function here accepts any JSON value and never raises;
``to_gemini`` stops at ``MAX_DEPTH`` levels and ``MAX_NODES`` nodes.
"""

from typing import Dict, List, Optional, Tuple

__all__ = ["FORMATS", "KEPT", "MAX_DEPTH", "MAX_NODES", "from_gemini", "to_gemini"]

# The Schema object's fields (ai.google.dev/api/caching#Schema); everything else is dropped.
KEPT = frozenset(
    (
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "minimum",
        "maximum",
    )
)

# ``format`` values the Gemini API accepts, per type; any other makes the request fail.
FORMATS = {
    "string": frozenset(("enum", "date-time")),
    "number": frozenset(("float", "double")),
    "integer": frozenset(("int32", "int64")),
}

_TYPES = frozenset(("string", "number", "integer", "boolean", "array", "object"))

# Keys whose value is a piece of text, a number, or a count, copied when of that kind.
_TEXT_KEYS = ("title", "description", "pattern")
_NUMBER_KEYS = ("minimum", "maximum")
_COUNT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")

# What an array without a usable ``items`` gets, and what a recursive ``$ref`` becomes.
_ANY_ITEMS = {"type": "string"}
_CYCLE = {"type": "object"}

# Deeper nesting than this is cut off (a hostile schema must not exhaust the stack), and
# no schema yields more nodes than MAX_NODES (references inlined twice per level would
# otherwise grow it exponentially).
MAX_DEPTH = 48
MAX_NODES = 5000

_REF_PREFIXES = ("#/$defs/", "#/definitions/")


def to_gemini(schema) -> dict:
    """``schema`` (JSON Schema, any JSON value) as a Gemini ``parameters`` schema: a new
    dict, the input untouched. See the module docstring for the rules."""
    if not isinstance(schema, dict):
        return {}
    definitions = {}  # type: Dict[str, object]
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, dict):
            definitions.update(found)
    return _Cleaner(definitions).node(schema, 0, ())


def from_gemini(schema, depth: int = 0):
    """A Gemini client's ``parameters`` schema as JSON Schema: ``type`` names in lower
    case, ``nullable: true`` folded into the type (``["string", "null"]``). Other keys
    are kept as they are. Returns a new value; non-dict input comes back unchanged."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return schema
    result = {}
    nullable = schema.get("nullable") is True
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            value = value.lower()
            if nullable and value != "null":
                value = [value, "null"]
        elif key == "properties" and isinstance(value, dict):
            value = {name: from_gemini(sub, depth + 1) for name, sub in value.items()}
        elif key == "items":
            value = from_gemini(value, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            value = [from_gemini(sub, depth + 1) for sub in value]
        result[key] = value
    if nullable and isinstance(result.get("type"), list):
        del result["nullable"]  # folded into the type
    return result


class _Cleaner:
    """One ``to_gemini`` run: the root's definitions, for ``$ref``, and the number of
    nodes it may still write."""

    __slots__ = ("_definitions", "_budget")

    def __init__(self, definitions: Dict[str, object]):
        self._definitions = definitions
        self._budget = MAX_NODES

    def node(self, schema, depth: int, refs: Tuple[str, ...]) -> dict:
        """One schema node cleaned; ``refs``: the ``$ref`` names being inlined above it."""
        if not isinstance(schema, dict) or depth > MAX_DEPTH or self._budget <= 0:
            return {}
        self._budget -= 1
        schema, refs = self._inline(schema, refs)
        if schema is None:
            return dict(_CYCLE)
        schema = self._merge_all_of(schema, refs)
        result = {}  # type: Dict[str, object]
        nullable = schema.get("nullable") is True
        types = _type_names(schema.get("type"))
        if "null" in types:
            nullable = True
            types = [name for name in types if name != "null"]
        if len(types) == 1:
            result["type"] = types[0]
        elif types:
            result["anyOf"] = [{"type": name} for name in types]
        nullable = self._variants(schema, result, depth, refs) or nullable
        nullable = _enum(schema, result) or nullable
        self._children(schema, result, depth, refs)
        _scalars(schema, result)
        if nullable:
            result["nullable"] = True
        return result

    def _inline(self, schema: dict, refs: Tuple[str, ...]):
        """``schema`` with a local ``$ref`` replaced by its definition (sibling keys
        win); ``(None, refs)`` for a reference already being inlined above (a cycle).
        An unresolvable reference is dropped."""
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema, refs
        name = _ref_name(ref)
        target = self._definitions.get(name) if name is not None else None
        if not isinstance(target, dict):
            return {key: value for key, value in schema.items() if key != "$ref"}, refs
        if name in refs:
            return None, refs
        merged = dict(target)
        merged.update((key, value) for key, value in schema.items() if key != "$ref")
        return merged, refs + (name,)

    def _merge_all_of(self, schema: dict, refs: Tuple[str, ...]) -> dict:
        """``schema`` with its ``allOf`` branches merged in, each branch's ``$ref``
        resolved first (``allOf: [{$ref}]`` is how some generators attach a description
        to a reference). Branches that are not objects, or cycles, are ignored."""
        branches = schema.get("allOf")
        if not isinstance(branches, list):
            return schema
        resolved = []  # type: List[dict]
        for branch in branches:
            if isinstance(branch, dict):
                branch, _ = self._inline(branch, refs)
                if branch is not None:
                    resolved.append(branch)
        return _merge_all_of(schema, resolved)

    def _variants(self, schema: dict, result: dict, depth: int, refs) -> bool:
        """``anyOf``/``oneOf`` → ``result["anyOf"]``; True when a branch was ``null``. A
        single branch left (``[X, null]``) is merged into the node instead."""
        variants = schema.get("anyOf")
        if not isinstance(variants, list):
            variants = schema.get("oneOf")
        if not isinstance(variants, list):
            return False
        nullable = False
        cleaned = []  # type: List[dict]
        for variant in variants:
            if isinstance(variant, dict) and _type_names(variant.get("type")) == ["null"]:
                nullable = True
                continue
            cleaned.append(self.node(variant, depth + 1, refs))
        if len(cleaned) == 1 and "type" not in result and "anyOf" not in result:
            for key, value in cleaned[0].items():
                result.setdefault(key, value)
        elif cleaned:
            result["anyOf"] = cleaned
        return nullable

    def _children(self, schema: dict, result: dict, depth: int, refs) -> None:
        """``properties`` (and the ``required`` names they define) and ``items``."""
        properties = schema.get("properties")
        if isinstance(properties, dict) and properties:
            cleaned = {name: self.node(sub, depth + 1, refs) for name, sub in properties.items()}
            result["properties"] = cleaned
            required = schema.get("required")
            if isinstance(required, list):
                names = []  # type: List[str]
                for name in required:
                    if isinstance(name, str) and name in cleaned and name not in names:
                        names.append(name)
                if names:
                    result["required"] = names
            ordering = schema.get("propertyOrdering")
            if isinstance(ordering, list) and all(isinstance(name, str) for name in ordering):
                result["propertyOrdering"] = list(ordering)
        items = schema.get("items")
        if isinstance(items, list):
            items = items[0] if items else None
        if isinstance(items, dict):
            result["items"] = self.node(items, depth + 1, refs)
        elif result.get("type") == "array":
            result["items"] = dict(_ANY_ITEMS)


def _ref_name(ref: str) -> Optional[str]:
    for prefix in _REF_PREFIXES:
        if ref.startswith(prefix) and "/" not in ref[len(prefix) :]:
            return ref[len(prefix) :]
    return None


def _type_names(value) -> List[str]:
    """The JSON Schema type names ``value`` (a name or a list of names) gives, lower
    case, unknown names left out."""
    names = value if isinstance(value, list) else [value]
    result = []  # type: List[str]
    for name in names:
        if isinstance(name, str):
            name = name.lower()
            if (name in _TYPES or name == "null") and name not in result:
                result.append(name)
    return result


def _merge_all_of(schema: dict, branches: List[dict]) -> dict:
    """``schema`` with ``branches`` (its ``allOf``) merged in: properties and required
    names united, any other key taken from the first place that has it (the node itself
    first)."""
    merged = {key: value for key, value in schema.items() if key != "allOf"}
    properties = dict(merged["properties"]) if isinstance(merged.get("properties"), dict) else {}
    required = list(merged["required"]) if isinstance(merged.get("required"), list) else []
    for branch in branches:
        if isinstance(branch.get("properties"), dict):
            for name, sub in branch["properties"].items():
                properties.setdefault(name, sub)
        if isinstance(branch.get("required"), list):
            required.extend(name for name in branch["required"] if name not in required)
        for key, value in branch.items():
            if key not in ("properties", "required"):
                merged.setdefault(key, value)
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _enum(schema: dict, result: dict) -> bool:
    """``enum`` (or ``const`` as an enum of one) into ``result`` when its values are
    strings; True when it allowed ``null``."""
    if "enum" in schema:
        values = schema["enum"]
    elif "const" in schema:
        values = [schema["const"]]
    else:
        return False
    if not isinstance(values, list):
        return False
    nullable = None in values
    values = [value for value in values if value is not None]
    if values and all(isinstance(value, str) for value in values):
        result["enum"] = values
        result.setdefault("type", "string")
    return nullable


def _scalars(schema: dict, result: dict) -> None:
    """The keys that hold plain values: text, numbers, counts, ``format``, ``example``."""
    for key in _TEXT_KEYS:
        value = schema.get(key)
        if isinstance(value, str):
            result[key] = value
    for key in _NUMBER_KEYS:
        value = schema.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            result[key] = value
    for key in _COUNT_KEYS:
        value = schema.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            result[key] = value
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in FORMATS.get(result.get("type"), ()):
        result["format"] = fmt
    if "example" in schema:
        result["example"] = schema["example"]
