"""Pieces of cliproxy.providers.executor that do no I/O: the body an attempt sends and the
pipeline a streamed answer goes through. Each shortcut is checked against the longer way
it skips."""

import gzip
import json
import zlib
from types import SimpleNamespace

import pytest

from cliproxy.config.model import Config, Protocol, ProviderEntry, ProviderKind
from cliproxy.http.headers import Headers
from cliproxy.providers import executor
from cliproxy.providers.outbound import Endpoint
from cliproxy.routing.registry import Served
from cliproxy.routing.suffix import split_suffix
from cliproxy.translate.context import RewriteContext
from cliproxy.translate.relay import EventRelay

EVENTS = (
    b'event: message_start\ndata: {"type":"message_start","message":{"model":"up","content":[]}}\n\n'
    + b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    + b'"content_block":{"type":"tool_use","id":"t","name":"read_file","input":{}}}\n\n'
    + b"".join(
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"n":%d}}\n\n' % i
        for i in range(40)
    )
    + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def _call(protocol=Protocol.CLAUDE, body=None, raw=None):
    return SimpleNamespace(
        protocol=protocol,
        context=RewriteContext("client-model", tool_names={"read_file": "Read_File"}),
        endpoint=Endpoint.GEMINI_GENERATE if protocol is Protocol.GEMINI else Endpoint.MESSAGES,
        stream=False,
        query="",
        headers=Headers([("content-type", "application/json")]),
        config=Config(),
        body=body,
        raw=raw,
    )


def _pieces(data, size=37):
    return [data[i : i + size] for i in range(0, len(data), size)]


def _relayed(pipeline, chunks):
    return b"".join(pipeline.feed(chunk) for chunk in chunks) + pipeline.flush() + pipeline.close()


@pytest.mark.parametrize("coding", [None, "identity", " Identity ", ""])
def test_a_stream_without_a_coding_goes_straight_into_the_relay(coding):
    headers = Headers([] if coding is None else [("content-encoding", coding)])
    pipeline = executor._stream_pipeline(_call(), headers, Protocol.CLAUDE, None)
    assert type(pipeline) is EventRelay
    plain = EventRelay(executor.anthropic.StreamRewriter(_call().context))
    assert _relayed(pipeline, _pieces(EVENTS)) == _relayed(plain, _pieces(EVENTS))


@pytest.mark.parametrize(
    "coding, encode", [("gzip", gzip.compress), ("deflate", zlib.compress), (" GZIP ", gzip.compress)]
)
def test_a_coded_stream_is_decoded_then_relayed_like_a_plain_one(coding, encode):
    pipeline = executor._stream_pipeline(_call(), Headers([("content-encoding", coding)]), Protocol.CLAUDE, None)
    assert type(pipeline) is not EventRelay
    plain = EventRelay(executor.anthropic.StreamRewriter(_call().context))
    expected = _relayed(plain, _pieces(EVENTS))
    assert b'"model":"client-model"' in expected and b'"name":"Read_File"' in expected
    assert _relayed(pipeline, _pieces(encode(EVENTS))) == expected


def _served(upstream_model, kind=ProviderKind.CLAUDE):
    entry = ProviderEntry(kind, "claude-api-key[0]", "sk-up", "http://127.0.0.1:9", "up")
    return Served(entry, upstream_model, "visible")


PREPARE_CASES = [
    # (protocol, body, raw given, upstream model, suffix, the client's bytes go out)
    (Protocol.CLAUDE, {"model": "m", "max_tokens": 5}, True, "m", None, True),
    (Protocol.CLAUDE, {"model": "m", "max_tokens": 5}, True, "m-upstream", None, False),
    (Protocol.CLAUDE, {"model": "m", "max_tokens": 5}, False, "m", None, False),
    (Protocol.CLAUDE, {"max_tokens": 5}, True, "m", None, False),
    (Protocol.CLAUDE, {"model": "m", "max_tokens": 64000}, True, "m", "m(8192)", False),
    (Protocol.GEMINI, {"contents": []}, True, "gemini-x", None, True),
    (Protocol.GEMINI, {"contents": []}, True, "gemini-x", "gemini-x(low)", False),
]


@pytest.mark.parametrize("protocol, body, has_raw, upstream_model, suffixed, passes", PREPARE_CASES)
def test_the_clients_bytes_go_out_only_when_rewriting_would_change_nothing(
    protocol, body, has_raw, upstream_model, suffixed, passes
):
    raw = json.dumps(body).encode() if has_raw else None
    call = _call(protocol, body, raw)
    suffix = split_suffix(suffixed)[1] if suffixed else None
    candidate = SimpleNamespace(suffix=suffix)
    kind = ProviderKind.GEMINI if protocol is Protocol.GEMINI else ProviderKind.CLAUDE
    served = _served(upstream_model, kind)
    _, headers, sent = executor._prepare(call, candidate, served)
    rewritten = executor._rewritten_body(call, candidate, served)
    assert headers.get("content-type") == "application/json"
    assert (sent is raw) is passes
    assert json.loads(sent) == json.loads(rewritten)
