"""Turning a ``ProxyError`` into the error the client's SDK expects.

Strategy: the one place where errors become bytes (ARCHITECTURE "errors as data"). Each
protocol has a body shape and a table from our error kinds (Anthropic-style names, see
``cliproxy.errors``) to that protocol's vocabulary; a kind missing from a table falls back
by HTTP status class. SDKs choose their exception class from the HTTP status; the ``type``
and ``status`` strings are what users read, so they use each protocol's documented names.

Shapes:
- Anthropic: ``{"type":"error","error":{"type","message"}}``.
- OpenAI Chat and Responses: ``{"error":{"message","type","param":null,"code"}}``;
  ``code`` carries our own kind when the OpenAI ``type`` had to fold it into a broader
  one (``request_too_large`` → ``invalid_request_error``), else ``null``.
- Gemini: ``{"error":{"code":<HTTP status>,"message","status":<google.rpc code name>,
  "type"}}`` (``type`` is our kind, an extra field Google clients ignore).
- Generic (management routes, no protocol): ``{"error":{"type","message"}}``.

In-stream errors (``error_event``), for a stream whose 200 head is already sent:
- Anthropic: ``event: error`` with the Anthropic error body (what the API itself sends).
- OpenAI Chat: one ``data: {"error":{...}}`` chunk and then nothing: no ``[DONE]``, so a
  client that ignores the error chunk still sees a truncated stream, and the OpenAI SDKs
  raise on a chunk carrying ``error``.
- Responses: ``event: error`` with ``{"type":"error","code","message","param":null}``;
  ``sequence_number`` is left out because the proxy does not parse the upstream's events
  to learn it.
- Gemini: ``data: {"error":{...}}``, the body shape above.
- Generic: ``event: error`` with the generic body.
"""

from typing import Optional, Tuple

from cliproxy.config.model import Protocol
from cliproxy.errors import ProxyError
from cliproxy.http.headers import Headers
from cliproxy.http.sse import encode_event
from cliproxy.translate.context import dumps

# Our kinds (cliproxy.errors) and upstream-style kinds → Anthropic error types
# (https://docs.anthropic.com/en/api/errors). Kinds absent here pass through unchanged:
# ours are already Anthropic names except these two.
_ANTHROPIC_TYPES = {
    "payment_required": "billing_error",
    "not_implemented": "api_error",
}

# → OpenAI error types, named after the OpenAI SDKs' exception classes
# (BadRequest / Authentication / PermissionDenied / NotFound / RateLimit / APIError).
_OPENAI_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "request_too_large": "invalid_request_error",
    "payment_required": "insufficient_quota",
    "api_error": "api_error",
    "overloaded_error": "api_error",
    "timeout_error": "api_error",
    "not_implemented": "api_error",
}

# HTTP status → google.rpc.Code name, as Google APIs pair them
# (https://cloud.google.com/apis/design/errors#handling_errors).
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_JSON = "application/json"


def render_error(protocol: Optional[Protocol], error: ProxyError) -> Tuple[int, Headers, bytes]:
    """The status, headers and body answering ``error`` to a client of ``protocol``
    (``None``: a management or other non-model route). Headers are ``content-type:
    application/json`` followed by ``error.headers`` (e.g. ``retry-after``). Never
    raises."""
    headers = Headers([("content-type", _JSON)])
    for name, value in error.headers:
        if name.lower() != "content-type":
            headers.add(name, value)
    body = dumps(error_body(protocol, error)).encode("utf-8")
    return error.status, headers, body


def error_body(protocol: Optional[Protocol], error: ProxyError) -> dict:
    """The JSON error object for ``protocol`` (see the module docstring for shapes)."""
    if protocol is Protocol.CLAUDE:
        return {"type": "error", "error": _anthropic_error(error)}
    if protocol is Protocol.OPENAI or protocol is Protocol.RESPONSES:
        return {"error": _openai_error(error)}
    if protocol is Protocol.GEMINI:
        return {"error": _gemini_error(error)}
    return {"error": {"type": error.error_type, "message": error.message}}


def error_event(protocol: Optional[Protocol], error: ProxyError) -> bytes:
    """One SSE event reporting ``error`` inside a stream that has already started, in the
    form ``protocol``'s clients understand (see the module docstring). Never raises."""
    if protocol is Protocol.OPENAI or protocol is Protocol.GEMINI:
        return encode_event(dumps(error_body(protocol, error)))
    if protocol is Protocol.RESPONSES:
        openai = _openai_error(error)
        payload = {"type": "error", "code": openai["type"], "message": error.message, "param": None}
        return encode_event(dumps(payload), event="error")
    return encode_event(dumps(error_body(protocol, error)), event="error")


def gemini_status(status: int) -> str:
    """The google.rpc code name Google APIs pair with HTTP ``status``."""
    name = _GEMINI_STATUS.get(status)
    if name is not None:
        return name
    if status >= 500:
        return "INTERNAL"
    return "FAILED_PRECONDITION" if status >= 400 else "UNKNOWN"


def _anthropic_error(error: ProxyError) -> dict:
    kind = _ANTHROPIC_TYPES.get(error.error_type, error.error_type)
    return {"type": kind, "message": error.message}


def _openai_error(error: ProxyError) -> dict:
    kind = _OPENAI_TYPES.get(error.error_type)
    if kind is None:
        kind = "api_error" if error.status >= 500 else "invalid_request_error"
    code = None if kind == error.error_type else error.error_type
    return {"message": error.message, "type": kind, "param": None, "code": code}


def _gemini_error(error: ProxyError) -> dict:
    return {
        "code": error.status,
        "message": error.message,
        "status": gemini_status(error.status),
        "type": error.error_type,
    }
