"""render_error and error_event: one error, four protocol shapes."""

import json

import pytest

from cliproxy import errors
from cliproxy.config.model import Protocol
from cliproxy.http.sse import SSEParser
from cliproxy.translate.errors import error_body, error_event, gemini_status, render_error


def _events(data):
    parser = SSEParser()
    return parser.feed(data) + parser.flush()


@pytest.mark.parametrize(
    "protocol, error, expected",
    [
        (
            Protocol.CLAUDE,
            errors.BadRequest("bad model"),
            {"type": "error", "error": {"type": "invalid_request_error", "message": "bad model"}},
        ),
        (
            Protocol.CLAUDE,
            errors.PaymentRequired("add a mapping"),
            {"type": "error", "error": {"type": "billing_error", "message": "add a mapping"}},
        ),
        (
            Protocol.CLAUDE,
            errors.UpstreamTimeout("slow"),
            {"type": "error", "error": {"type": "timeout_error", "message": "slow"}},
        ),
        (
            Protocol.OPENAI,
            errors.Unauthorized("no key"),
            {
                "error": {
                    "message": "no key",
                    "type": "authentication_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (
            Protocol.OPENAI,
            errors.PayloadTooLarge("too big"),
            {
                "error": {
                    "message": "too big",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "request_too_large",
                }
            },
        ),
        (
            Protocol.RESPONSES,
            errors.NotFound("no such model"),
            {
                "error": {
                    "message": "no such model",
                    "type": "not_found_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (
            Protocol.RESPONSES,
            errors.ProxyError("teapot", status=418, error_type="odd_kind"),
            {
                "error": {
                    "message": "teapot",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "odd_kind",
                }
            },
        ),
        (
            Protocol.OPENAI,
            errors.UpstreamError("down"),
            {"error": {"message": "down", "type": "api_error", "param": None, "code": None}},
        ),
        (
            Protocol.GEMINI,
            errors.BadRequest("bad"),
            {
                "error": {
                    "code": 400,
                    "message": "bad",
                    "status": "INVALID_ARGUMENT",
                    "type": "invalid_request_error",
                }
            },
        ),
        (
            Protocol.GEMINI,
            errors.ProxyError("slow down", status=429, error_type="rate_limit_error"),
            {
                "error": {
                    "code": 429,
                    "message": "slow down",
                    "status": "RESOURCE_EXHAUSTED",
                    "type": "rate_limit_error",
                }
            },
        ),
        (
            None,
            errors.Forbidden("localhost only"),
            {"error": {"type": "permission_error", "message": "localhost only"}},
        ),
    ],
)
def test_render_error_shapes(protocol, error, expected):
    status, headers, body = render_error(protocol, error)
    assert status == error.status
    assert headers.get("content-type") == "application/json"
    assert json.loads(body.decode("utf-8")) == expected
    assert error_body(protocol, error) == expected


def test_render_error_keeps_error_headers_after_content_type():
    error = errors.ProxyError(
        "busy",
        status=429,
        error_type="rate_limit_error",
        headers=[("retry-after", "7"), ("content-type", "text/plain")],
    )
    _, headers, _ = render_error(Protocol.CLAUDE, error)
    assert headers.items() == [("content-type", "application/json"), ("retry-after", "7")]


def test_render_error_keeps_non_ascii_message_as_utf8():
    _, _, body = render_error(None, errors.BadRequest("modèle inconnu"))
    assert "modèle".encode("utf-8") in body


@pytest.mark.parametrize(
    "status, name",
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (413, "INVALID_ARGUMENT"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (502, "UNAVAILABLE"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (418, "FAILED_PRECONDITION"),
        (599, "INTERNAL"),
    ],
)
def test_gemini_status_names(status, name):
    assert gemini_status(status) == name


@pytest.mark.parametrize(
    "protocol, event_name, payload",
    [
        (
            Protocol.CLAUDE,
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
        ),
        (
            Protocol.OPENAI,
            None,
            {
                "error": {
                    "message": "busy",
                    "type": "api_error",
                    "param": None,
                    "code": "overloaded_error",
                }
            },
        ),
        (
            Protocol.RESPONSES,
            "error",
            {"type": "error", "code": "api_error", "message": "busy", "param": None},
        ),
        (
            Protocol.GEMINI,
            None,
            {
                "error": {
                    "code": 529,
                    "message": "busy",
                    "status": "INTERNAL",
                    "type": "overloaded_error",
                }
            },
        ),
        (None, "error", {"error": {"type": "overloaded_error", "message": "busy"}}),
    ],
)
def test_error_event_is_one_sse_event_in_the_protocol_shape(protocol, event_name, payload):
    error = errors.ProxyError("busy", status=529, error_type="overloaded_error")
    data = error_event(protocol, error)
    events = _events(data)
    assert len(events) == 1
    assert events[0].raw == data
    assert events[0].event == event_name
    assert json.loads(events[0].data) == payload


def test_openai_error_event_is_not_followed_by_done():
    data = error_event(Protocol.OPENAI, errors.UpstreamError("lost the upstream"))
    assert b"[DONE]" not in data
    assert data.endswith(b"\n\n")
