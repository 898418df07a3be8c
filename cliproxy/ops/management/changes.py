"""Putting one changed config key in force: validate, write back, swap.

Strategy: a change is one key's new value. The document it goes into is the config file
as it is on disk now (so an edit saved a moment ago, not yet picked up by the watcher, is
not lost), changed by ``writer.update_document``; it is validated by the loader exactly
as a reload would be, and unknown keys under the changed key are refused (a typo must
not be written as if it worked). Only a valid document is written (atomic rename), and
then the changed key alone replaces its part of the config in force, in one
``store.swap``: every other setting stays as in force (command-line host and port
included); other edits found in the file wait for the watcher. Nothing is awaited between
reading the file and swapping, so two changes cannot interleave.

Each change logs one INFO line naming the key, never the value.
"""

import codecs
import dataclasses
import logging
from typing import Any, Callable, Dict, Mapping, Optional

from cliproxy.config.loader import ConfigError, parse_document, parse_json
from cliproxy.config.model import Config, ProviderKind
from cliproxy.config.writer import update_document, write_document
from cliproxy.errors import BadRequest, ProxyError
from cliproxy.ops.management.fields import DELETE as DELETE_METHOD
from cliproxy.ops.management.fields import Field

log = logging.getLogger("cliproxy.ops.management")

_PROVIDER_KEYS = {kind.value: kind for kind in ProviderKind}


class ConfigFileUnavailable(ProxyError):
    """The config file cannot be read or parsed right now, so no change can be based on it."""

    status = 409
    error_type = "invalid_request_error"


class ConfigWriteFailed(ProxyError):
    status = 500
    error_type = "api_error"


def current_document(config: Config) -> Dict[str, Any]:
    """The document a change starts from: the config file as it is now, or, running on
    built-in defaults, the in-memory document. Raises ``ConfigFileUnavailable``."""
    if config.source_path is None:
        return config.document if config.document is not None else {}
    path = config.source_path
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        document = parse_json(codecs.decode(data, "utf-8-sig"), path)
    except OSError as exc:
        raise ConfigFileUnavailable(
            "cannot read the config file %s: %s; nothing changed" % (path, exc.strerror or exc)
        )
    except UnicodeDecodeError as exc:
        raise ConfigFileUnavailable(
            "the config file %s is not UTF-8 (byte %d); nothing changed" % (path, exc.start)
        )
    except ConfigError as exc:
        raise ConfigFileUnavailable(
            "the config file is not valid JSON, fix it first: %s" % "; ".join(exc.errors)
        )
    if not isinstance(document, dict):
        raise ConfigFileUnavailable("the config file %s is not a JSON object" % path)
    return document


class Changer(object):
    """Applies changes. ``environ`` resolves ``env:NAME`` while validating (the
    environment the config was loaded with); ``on_swap(old, new)`` runs after each swap."""

    def __init__(
        self,
        environ: Mapping[str, str],
        on_swap: Optional[Callable[[Config, Config], None]] = None,
    ) -> None:
        self.environ = environ
        self.on_swap = on_swap

    def apply(
        self, config: Config, store, document: dict, field: Field, value: Any, method: str
    ) -> Dict[str, Any]:
        """Validate, write and swap ``document`` with ``field`` set to ``value`` (removed
        when ``writer.DELETE``). Returns the answer's members. Raises ``BadRequest``
        (``ConfigError``: each problem named by its JSON path), ``ConfigFileUnavailable``
        or ``ConfigWriteFailed``; nothing is written or swapped then."""
        new_document = _updated(document, field, value)
        new_config, warnings = parse_document(
            new_document, source_path=config.source_path, environ=self.environ
        )
        own = [w for w in warnings if _is_under(w, field.path)]
        typos = [w for w in own if "unknown key" in w]
        if typos and method != DELETE_METHOD:
            raise BadRequest("invalid config: " + "; ".join(typos))
        in_force = _in_force(config, new_config, field.top_key)
        persisted = config.source_path is not None
        if persisted:
            _write(config.source_path, new_document)
        old = store.swap(in_force)
        if self.on_swap is not None:
            self.on_swap(old, in_force)
        log.info(
            "management API changed the config",
            extra={
                "fields": {
                    "method": method,
                    "key": field.path,
                    "persisted": persisted,
                    "config": config.source_path,
                }
            },
        )
        answer = {"ok": True, "persisted": persisted}  # type: Dict[str, Any]
        if own:
            answer["warnings"] = own
        return answer


def _updated(document: dict, field: Field, value: Any) -> dict:
    section = field.place[0] if len(field.place) > 1 else None
    try:
        return update_document(document, {field.place[-1]: value}, section)
    except ValueError as exc:  # the file's "ampcode" is not an object
        raise ConfigFileUnavailable("%s; fix the config file first" % exc)


def _in_force(old: Config, new: Config, top_key: str) -> Config:
    """``old`` with the part ``top_key`` configures taken from ``new``."""
    kind = _PROVIDER_KEYS.get(top_key)
    if kind is not None:
        # One provider list changed: that kind's entries from ``new``, the others kept,
        # in the loader's order (kinds in enum order, entries in file order).
        providers = tuple(
            entry
            for each in ProviderKind
            for entry in (new if each is kind else old).providers
            if entry.kind is each
        )
        return dataclasses.replace(old, providers=providers, document=new.document)
    attribute = top_key.replace("-", "_")
    return dataclasses.replace(old, document=new.document, **{attribute: getattr(new, attribute)})


def _is_under(message: str, path: str) -> bool:
    """Whether a loader message ``"json.path: ..."`` is about ``path`` or below it."""
    return message.startswith(path) and message[len(path):len(path) + 1] in ("[", ".", ":")


def _write(path: str, document: Dict[str, Any]) -> None:
    try:
        write_document(path, document)
    except OSError as exc:
        log.error(
            "management API could not write the config file; nothing changed",
            extra={"fields": {"config": path, "reason": exc.strerror or str(exc)}},
        )
        raise ConfigWriteFailed(
            "cannot write the config file %s: %s; nothing changed" % (path, exc.strerror or exc)
        )


__all__ = ["Changer", "ConfigFileUnavailable", "ConfigWriteFailed", "current_document"]
