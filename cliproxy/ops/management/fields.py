"""Which config keys the management API serves, and how their lists are addressed.

Strategy: one table, ``FIELDS``, names every key a user may change at run time by its
place in the document (``("ampcode", "model-mappings")``, ``("api-keys",)``). A field is
served at ``/v0/management/<place joined by "/">`` and its value is read through its view
(``views``). A plain value takes GET, PUT and DELETE. A list whose entries can be told
apart (``Entries``) also takes PATCH, which adds entries or replaces the one with the same
name; when ``addressable``, each entry is served on its own at ``/<field>/<index>`` (and
``/<field>/<name>`` when ``by_name``). The routes, the edits and the answers all read this
table, so a new field is one line here.
"""

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

from cliproxy.config.model import Config, ProviderKind
from cliproxy.masking import mask_secret
from cliproxy.ops.management import views

GET, PUT, PATCH, DELETE = "GET", "PUT", "PATCH", "DELETE"
VALUE_METHODS = (GET, PUT, DELETE)
LIST_METHODS = (GET, PUT, PATCH, DELETE)


@dataclasses.dataclass(frozen=True)
class Entries:
    """How the entries of a list field are named.

    ``name_key`` is the member that names an object entry (``"from"``, ``"name"``,
    ``"api-key"``), None when entries are strings named by themselves. Names are compared
    case-insensitively when ``fold_case``.
    """

    name_key: Optional[str]
    fold_case: bool = False
    addressable: bool = True
    by_name: bool = False  # entries also served at /<field>/<name>

    @property
    def objects(self) -> bool:
        return self.name_key is not None

    def normal(self, name: str) -> str:
        """``name`` as names are compared."""
        return name.lower() if self.fold_case else name

    def name_of(self, entry: Any) -> Optional[str]:
        """The compared name of ``entry``, or None when it has none (wrong shape)."""
        name = entry.get(self.name_key) if self.objects and isinstance(entry, dict) else entry
        return self.normal(name) if isinstance(name, str) else None

    @property
    def entry_methods(self) -> Tuple[str, ...]:
        # PATCH of one entry merges members, which only an object has.
        return LIST_METHODS if self.objects else VALUE_METHODS


@dataclasses.dataclass(frozen=True)
class Field:
    """One config key served at ``/v0/management/<route>``."""

    place: Tuple[str, ...]  # the keys leading to it in the document
    view: Callable[[Config], Any]  # the value in force, secrets masked
    entries: Optional[Entries] = None  # None: a plain value (no PATCH)

    @property
    def route(self) -> str:
        return "/".join(self.place)

    @property
    def path(self) -> str:
        """The JSON path the loader's messages use for it."""
        return ".".join(self.place)

    @property
    def methods(self) -> Tuple[str, ...]:
        return LIST_METHODS if self.entries is not None else VALUE_METHODS

    @property
    def top_key(self) -> str:
        return self.place[0]


def _provider_field(kind: ProviderKind) -> Field:
    return Field((kind.value,), lambda c: views.provider_entries(c, kind), Entries("api-key"))


def _ampcode(key: str, view: Callable[[Any], Any], entries: Optional[Entries] = None) -> Field:
    return Field(("ampcode", key), lambda c: view(c.ampcode), entries)


_ALL = (
    Field(("api-keys",), views.api_keys, Entries(None)),
    _provider_field(ProviderKind.CLAUDE),
    _provider_field(ProviderKind.GEMINI),
    _provider_field(ProviderKind.CODEX),
    Field(("openai-compatibility",), views.compat_blocks, Entries("name", by_name=True)),
    Field(("request-log",), lambda c: c.request_log),
    Field(("request-retry",), lambda c: c.request_retry),
    Field(("proxy-url",), views.proxy_url),
    Field(("debug",), lambda c: c.debug),
    _ampcode("upstream-url", lambda a: a.upstream_url or ""),
    _ampcode("upstream-api-key", lambda a: mask_secret(a.upstream_api_key or "")),
    _ampcode("upstream-api-keys", views.upstream_api_keys),
    _ampcode("restrict-management-to-localhost", lambda a: a.restrict_management_to_localhost),
    _ampcode("force-model-mappings", lambda a: a.force_model_mappings),
    _ampcode("paid-fallback", lambda a: a.paid_fallback.value),
    _ampcode("model-mappings", views.model_mappings, Entries("from", fold_case=True, addressable=False)),
)

FIELDS = {field.route: field for field in _ALL}  # type: Dict[str, Field]


__all__ = ["DELETE", "Entries", "FIELDS", "Field", "GET", "LIST_METHODS", "PATCH", "PUT", "VALUE_METHODS"]
