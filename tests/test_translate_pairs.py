"""Golden tests over every directed pair of protocols (12 pairs), field by field.

Each protocol's fixtures (``tests/fixtures/translate/<protocol>/``) express the shared cases
of ``tests/support/translate_cases.py``; its own codec tests pin that reading a fixture gives
the case and writing the case gives the fixture. Here a fixture of protocol A goes through
A's reader and B's writer and must equal B's fixture of the same case; streams go through
A's stream reader and B's stream writer, fed whole, event by event and at random byte
cuts, and must read back as the case in B.

What differs by nature between protocols is normalised before comparing: tool-call ids
(Gemini has none, so its reader makes its own; they are renamed in order of appearance to
the case's ids), answer ids and model names (a writer uses the requested model and its own
ids), and thinking signatures (meaningful only to the protocol that made them).
"""

import json
import random
from pathlib import Path

import pytest

from cliproxy.config.model import Protocol
from cliproxy.errors import ProxyError
from cliproxy.http.sse import SSEParser
from cliproxy.translate.context import dumps
from cliproxy.translate.errors import render_error
from cliproxy.translate.ir import AnswerBuilder, Thinking, ToolCall, ToolResult, replay
from cliproxy.translate.translator import CODECS, StreamTranslation, provider_error
from tests.support.translate_cases import ANSWERS, MODEL, PROTOCOLS, REQUESTS, answer_context

FIXTURES = Path(__file__).parent / "fixtures" / "translate"
PROTOCOL_OF = {
    "anthropic": Protocol.CLAUDE,
    "chat": Protocol.OPENAI,
    "responses": Protocol.RESPONSES,
    "gemini": Protocol.GEMINI,
}
PAIRS = [(a, b) for a in PROTOCOLS for b in PROTOCOLS if a != b]


def codec(name):
    return CODECS[PROTOCOL_OF[name]]


def fixture(name, case, kind):
    return FIXTURES / name / ("%s.%s" % (case, kind))


def load_json(name, case, kind):
    return json.loads(fixture(name, case, kind).read_text(encoding="utf-8"))


def read_request(name, body):
    return codec(name).read_request(body, model=MODEL if name == "gemini" else None, stream=False if name == "gemini" else None)


def canonical_ids(value, case_ids):
    """Tool-call ids renamed, in order of first appearance, to ``case_ids``; thinking
    signatures, answer ids and models cleared. In place; returns ``value``."""
    renamed = {}

    def rename(old):
        if old not in renamed:
            renamed[old] = case_ids[len(renamed)] if len(renamed) < len(case_ids) else old
        return renamed[old]

    parts = [part for message in getattr(value, "messages", []) for part in message.parts]
    parts += getattr(value, "parts", [])
    for part in parts:
        if isinstance(part, ToolCall):
            part.id = rename(part.id)
        elif isinstance(part, ToolResult):
            part.call_id = rename(part.call_id)
        elif isinstance(part, Thinking):
            part.signature = None
    if hasattr(value, "stop"):
        value.id = None
        value.model = None
    return value


def case_ids(value):
    parts = [part for message in getattr(value, "messages", []) for part in message.parts]
    parts += getattr(value, "parts", [])
    return [part.id for part in parts if isinstance(part, ToolCall)]


# -- requests ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REQUESTS))
@pytest.mark.parametrize("source,target", PAIRS)
def test_request_translates_to_the_targets_own_fixture(source, target, case):
    conversation = canonical_ids(read_request(source, load_json(source, case, "request.json")), case_ids(REQUESTS[case]))
    assert conversation == REQUESTS[case]
    written = codec(target).write_request(conversation, MODEL)
    assert written == load_json(target, case, "request.json")


@pytest.mark.parametrize("case", sorted(REQUESTS))
@pytest.mark.parametrize("source,target", PAIRS)
def test_request_round_trip_is_lossless_for_the_shared_cases(source, target, case):
    original = load_json(source, case, "request.json")
    there = codec(target).write_request(read_request(source, original), MODEL)
    back = canonical_ids(read_request(target, json.loads(dumps(there))), case_ids(REQUESTS[case]))
    assert codec(source).write_request(back, MODEL) == original


# -- whole answers -----------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
@pytest.mark.parametrize("source,target", PAIRS)
def test_answer_translates_to_the_targets_own_fixture(source, target, case):
    answer = codec(source).read_response(load_json(source, case, "response.json"))
    answer = canonical_ids(answer, case_ids(ANSWERS[case]))
    assert answer == ANSWERS[case]
    assert codec(target).write_response(answer, answer_context()) == load_json(target, case, "response.json")


# -- streams -----------------------------------------------------------------------------


def _translate_stream(source, target, data, cuts):
    """``data`` (A's stream) through A's reader and B's writer, fed in the pieces
    ``cuts`` makes; the output bytes."""
    pipeline = StreamTranslation(codec(source).StreamReader, codec(target).StreamWriter(answer_context()))
    out = []
    start = 0
    for end in list(cuts) + [len(data)]:
        out.append(pipeline.feed(data[start:end]))
        start = end
    out.append(pipeline.flush())
    out.append(pipeline.close())
    return b"".join(out)


def _events(data):
    parser = SSEParser()
    return parser.feed(data) + parser.flush()


def _read_stream(name, data):
    builder = AnswerBuilder()
    reader = codec(name).StreamReader(builder)
    for event in _events(data):
        reader.feed(event)
    if builder.failure is None:
        reader.close()
    return builder


@pytest.mark.parametrize("case", sorted(ANSWERS))
@pytest.mark.parametrize("source,target", PAIRS)
def test_stream_translates_and_reads_back_as_the_case(source, target, case):
    data = fixture(source, case, "stream.sse").read_bytes()
    whole = _translate_stream(source, target, data, [])
    boundaries = []
    offset = 0
    for event in _events(data):
        offset += len(event.raw)
        boundaries.append(offset)
    rng = random.Random(hash((source, target, case)) & 0xFFFF)
    random_cuts = sorted(rng.sample(range(1, len(data)), min(40, len(data) - 1)))
    assert _translate_stream(source, target, data, boundaries[:-1]) == whole
    assert _translate_stream(source, target, data, random_cuts) == whole
    builder = _read_stream(target, whole)
    assert builder.failure is None
    assert builder.ended
    assert canonical_ids(builder.answer, case_ids(ANSWERS[case])) == ANSWERS[case]


@pytest.mark.parametrize("source,target", PAIRS)
def test_provider_error_event_mid_stream_becomes_the_clients_error_event(source, target):
    data = fixture(source, "error", "stream.sse").read_bytes()
    out = _translate_stream(source, target, data, [])
    builder = _read_stream(target, out)
    assert builder.failure is not None
    assert "Overloaded" in builder.failure.message
    assert "".join(p.text for p in builder.answer.parts if hasattr(p, "text")) == "Partial"


@pytest.mark.parametrize("source,target", PAIRS)
def test_whole_answer_replayed_for_a_streaming_client(source, target):
    answer = codec(source).read_response(load_json(source, "tools", "response.json"))
    writer = codec(target).StreamWriter(answer_context())
    replay(answer, writer, dumps)
    builder = _read_stream(target, writer.take())
    assert canonical_ids(builder.answer, case_ids(ANSWERS["tools"])) == ANSWERS["tools"]


# -- provider errors ---------------------------------------------------------------------

ERROR_BODIES = {
    "anthropic": {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}},
    "chat": {"error": {"message": "prompt is too long", "type": "invalid_request_error", "param": None, "code": None}},
    "responses": {"error": {"message": "prompt is too long", "type": "invalid_request_error", "param": None, "code": None}},
    "gemini": {"error": {"code": 400, "message": "prompt is too long", "status": "INVALID_ARGUMENT"}},
}


@pytest.mark.parametrize("source,target", PAIRS)
def test_provider_error_answer_in_the_clients_shape(source, target):
    error = provider_error(400, json.dumps(ERROR_BODIES[source]).encode())
    assert isinstance(error, ProxyError)
    status, _, body = render_error(PROTOCOL_OF[target], error)
    assert status == 400
    rendered = json.loads(body)
    assert rendered["error"]["message"] == "prompt is too long"
    if target == "anthropic":
        assert rendered["type"] == "error" and rendered["error"]["type"] == "invalid_request_error"
    elif target == "gemini":
        assert rendered["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert rendered["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "status,kind",
    [(401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"), (429, "rate_limit_error"),
     (413, "request_too_large"), (500, "api_error"), (529, "overloaded_error"), (418, "invalid_request_error")],
)
def test_provider_error_kind_follows_the_status(status, kind):
    error = provider_error(status, b"<html>oops</html>")
    assert error.error_type == kind
    assert error.status == status
    assert error.message == "<html>oops</html>"
