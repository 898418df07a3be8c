"""The config in force as the management API shows it: file key names, secrets masked.

Strategy: every view is built from the ``Config`` in force (effective values: defaults
filled in, ``env:`` references resolved), in the shape the file takes, so what a GET
answers can be edited and sent back with PUT. Secrets never leave unmasked: keys
(``masking.mask_secret``: ``sk-a…f3``), header values whose name says they carry a
credential, and the password of a proxy URL (a bare ``…``). Every masked form contains
``…`` or is ``masking.FULL_MASK``, which is what lets ``edits`` refuse one sent back.
``remote-management.secret-key`` is never shown, not even masked.

A setting the views do not know (a key added to ``Config`` later) is still shown, with
every string in it masked: an unknown value is treated as a secret until a view says
otherwise.
"""

import dataclasses
import enum
import re
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from cliproxy.config.model import AmpCode, Config, ProviderEntry, ProviderKind
from cliproxy.masking import ELLIPSIS, SENSITIVE_HEADERS, mask_secret

# Parts of a header name that say its value is a credential (beyond SENSITIVE_HEADERS).
_SECRET_NAME_PARTS = ("key", "token", "secret", "auth", "password", "cookie")

# "openai-compatibility[3]" or "openai-compatibility[3].api-key-entries[0]" → 3.
_BLOCK_INDEX = re.compile(r"^[a-z-]+\[(\d+)\]")

# Config attributes shown by a view of their own (or never, for the bookkeeping ones).
_SPECIAL = frozenset(
    ("api_keys", "proxy_url", "remote_management", "providers", "ampcode", "source_path", "document")
)
# Config attributes known to hold no secret: shown as they are.
_PLAIN = frozenset(
    (
        "host",
        "port",
        "tls",
        "allow_unauthenticated",
        "ca_bundle",
        "request_retry",
        "limits",
        "debug",
        "metrics_auth",
        "request_log",
        "logs_dir",
        "error_logs_max_files",
        "reload_interval",
    )
)


def masked_url(url: Optional[str]) -> str:
    """``url`` with the password of its user info replaced by ``…``; ``""`` for None."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return mask_secret(url)  # not a URL after all: no telling what it holds
    if password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc="%s:%s@%s" % (user, ELLIPSIS, host)))


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in SENSITIVE_HEADERS or any(part in lowered for part in _SECRET_NAME_PARTS)


def _headers(pairs: Tuple[Tuple[str, str], ...]) -> Dict[str, str]:
    # The whole value is masked, scheme included, so the masked form always shows "…"
    # or is FULL_MASK and cannot be taken for a real value when sent back.
    return {name: mask_secret(value) if _is_secret_header(name) else value for name, value in pairs}


def _models(entry: ProviderEntry) -> List[Dict[str, str]]:
    return [{"name": model.name, "alias": model.alias or ""} for model in entry.models]


# ---- sections ----------------------------------------------------------------------------


def api_keys(config: Config) -> List[str]:
    return [mask_secret(key) for key in config.api_keys]


def proxy_url(config: Config) -> str:
    return masked_url(config.proxy_url)


def provider_entries(config: Config, kind: ProviderKind) -> List[Dict[str, Any]]:
    """The entries of ``claude-api-key``, ``gemini-api-key`` or ``codex-api-key``."""
    return [
        {
            "api-key": mask_secret(entry.api_key),
            "base-url": entry.base_url,
            "headers": _headers(entry.headers),
            "proxy-url": masked_url(entry.proxy_url),
            "models": _models(entry),
            "excluded-models": list(entry.excluded_models),
        }
        for entry in config.providers
        if entry.kind is kind
    ]


def compat_blocks(config: Config) -> List[Dict[str, Any]]:
    """The ``openai-compatibility`` blocks: the loader made one entry per key of a block,
    so entries are grouped back by the block index their path starts with."""
    blocks = []  # type: List[Dict[str, Any]]
    last_index = None
    for entry in config.providers:
        if entry.kind is not ProviderKind.OPENAI_COMPAT:
            continue
        match = _BLOCK_INDEX.match(entry.path)
        index = match.group(1) if match else entry.path
        if index != last_index:
            last_index = index
            blocks.append(
                {
                    "name": entry.name,
                    "base-url": entry.base_url,
                    "api-key-entries": [],
                    "headers": _headers(entry.headers),
                    "models": _models(entry),
                    "excluded-models": list(entry.excluded_models),
                }
            )
        if ".api-key-entries[" in entry.path:  # else a block without keys
            blocks[-1]["api-key-entries"].append(
                {"api-key": mask_secret(entry.api_key), "proxy-url": masked_url(entry.proxy_url)}
            )
    return blocks


def model_mappings(ampcode: AmpCode) -> List[Dict[str, Any]]:
    # One target is shown as a string, several as a list: the forms the file accepts.
    return [
        {
            "from": m.source,
            "to": m.targets[0] if len(m.targets) == 1 else list(m.targets),
            "regex": m.regex,
        }
        for m in ampcode.model_mappings
    ]


def upstream_api_keys(ampcode: AmpCode) -> List[Dict[str, Any]]:
    return [
        {
            "upstream-api-key": mask_secret(m.upstream_api_key),
            "api-keys": [mask_secret(key) for key in m.api_keys],
        }
        for m in ampcode.upstream_api_keys
    ]


def ampcode(section: AmpCode) -> Dict[str, Any]:
    """The whole ``ampcode`` section."""
    return {
        # None (offline, SPEC §3.1) is spelled "" in the file, and so here.
        "upstream-url": section.upstream_url or "",
        "upstream-api-key": mask_secret(section.upstream_api_key or ""),
        "upstream-api-keys": upstream_api_keys(section),
        "restrict-management-to-localhost": section.restrict_management_to_localhost,
        "force-model-mappings": section.force_model_mappings,
        "paid-fallback": section.paid_fallback.value,
        "model-mappings": model_mappings(section),
    }


def whole_config(config: Config) -> Dict[str, Any]:
    """Every setting in force, in the file's names and order (``GET /config``)."""
    view = {}  # type: Dict[str, Any]
    for field in dataclasses.fields(config):
        name = field.name
        key = name.replace("_", "-")
        value = getattr(config, name)
        if name == "api_keys":
            view[key] = api_keys(config)
        elif name == "proxy_url":
            view[key] = proxy_url(config)
        elif name == "remote_management":
            view[key] = {"allow-remote": value.allow_remote}  # the secret key: never
        elif name in _PLAIN:
            view[key] = _plain(value, secret=False)
        elif name not in _SPECIAL:
            view[key] = _plain(value, secret=True)
    for kind in (ProviderKind.CLAUDE, ProviderKind.GEMINI, ProviderKind.CODEX):
        view[kind.value] = provider_entries(config, kind)
    view[ProviderKind.OPENAI_COMPAT.value] = compat_blocks(config)
    view["ampcode"] = ampcode(config.ampcode)
    return view


def _plain(value: Any, secret: bool) -> Any:
    """``value`` as JSON in the file's names; strings masked when ``secret``. ``None`` is
    ``""``: every optional setting of the model is a string the file leaves empty."""
    if dataclasses.is_dataclass(value):
        return {
            f.name.replace("_", "-"): _plain(getattr(value, f.name), secret)
            for f in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(item, secret) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, secret) for k, v in value.items()}
    if value is None:
        return ""
    if isinstance(value, str) and secret:
        return mask_secret(value)
    return value


__all__ = [
    "ampcode",
    "api_keys",
    "compat_blocks",
    "masked_url",
    "model_mappings",
    "provider_entries",
    "proxy_url",
    "upstream_api_keys",
    "whole_config",
]
