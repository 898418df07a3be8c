"""Anthropic Messages: request sanitising, response and SSE rewriting."""

import json

import pytest

from cliproxy.http.sse import Event, SSEParser, encode_event
from cliproxy.translate.anthropic import (
    CANONICAL_TOOL_NAMES,
    StreamRewriter,
    clean_beta_header,
    rewrite_raw,
    rewrite_response,
    sanitize,
    sanitize_request,
    tool_name_map,
)
from cliproxy.translate.context import RewriteContext

REQUESTED = "claude-opus-4-5-20251101(high)"


def _ctx(body=None):
    return RewriteContext(REQUESTED, tool_name_map((body or {}).get("tools")))


def _parse(data):
    parser = SSEParser()
    return parser.feed(data) + parser.flush()


# sanitize_request: thinking signatures -----------------------------------------------


@pytest.mark.parametrize(
    "block, kept",
    [
        ({"type": "thinking", "thinking": "t"}, False),
        ({"type": "thinking", "thinking": "t", "signature": ""}, False),
        ({"type": "thinking", "thinking": "t", "signature": None}, False),
        ({"type": "thinking", "thinking": "t", "signature": 123}, False),
        ({"type": "thinking", "thinking": "t", "signature": ["s"]}, False),
        ({"type": "thinking", "thinking": "t", "signature": "EqQBCkYIARgC"}, True),
        ({"type": "redacted_thinking", "data": "abc"}, True),
    ],
)
def test_sanitize_drops_assistant_thinking_without_a_valid_signature(block, kept):
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [block, {"type": "text", "text": "answer"}]},
        ]
    }
    result = sanitize_request(body)
    assert result is body
    content = body["messages"][1]["content"]
    assert (block in content) is kept
    assert content[-1] == {"type": "text", "text": "answer"}


def test_sanitize_leaves_thinking_in_non_assistant_messages_and_string_content():
    user_block = {"type": "thinking", "thinking": "odd but not ours to judge"}
    body = {
        "messages": [
            {"role": "user", "content": [user_block]},
            {"role": "assistant", "content": "plain text"},
        ]
    }
    sanitize_request(body)
    assert body["messages"][0]["content"] == [user_block]
    assert body["messages"][1]["content"] == "plain text"


def test_sanitize_removes_signature_from_tool_use_blocks():
    body = {
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}, "signature": "x"},
                    {"type": "tool_use", "id": "t2", "name": "Read", "input": {}},
                ],
            }
        ]
    }
    sanitize_request(body)
    content = body["messages"][0]["content"]
    assert content == [
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}},
        {"type": "tool_use", "id": "t2", "name": "Read", "input": {}},
    ]


def test_sanitize_tolerates_odd_shapes():
    body = {"messages": ["nonsense", {"role": "assistant"}, {"content": [1, None]}], "tools": "x"}
    assert sanitize_request(body) is body
    assert sanitize_request({}) == {}


# sanitize_request: cache_control -----------------------------------------------------

CC = {"type": "ephemeral"}


def _marked(name):
    return {"type": "text", "text": name, "cache_control": dict(CC)}


def _marked_names(body):
    """Names of the blocks still carrying cache_control, in API prefix order."""
    names = []
    for tool in body.get("tools", []):
        if "cache_control" in tool:
            names.append(tool["name"])
    system = body.get("system")
    if isinstance(system, list):
        names.extend(b["text"] for b in system if "cache_control" in b)
    for message in body["messages"]:
        content = message["content"]
        if not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "tool_result":
                names.extend(b["text"] for b in block["content"] if "cache_control" in b)
                if "cache_control" in block:
                    names.append(block["tool_use_id"])
            elif "cache_control" in block:
                names.append(block["text"])
    return names


def test_sanitize_keeps_the_last_four_cache_controls_in_api_order_whatever_the_key_order():
    # Amp writes "messages" before "system" and "tools": the dict's key order must not
    # decide which markers survive.
    body = {
        "messages": [
            {"role": "user", "content": [_marked("user-1")]},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "result-1",
                        "content": [_marked("nested-1")],
                        "cache_control": dict(CC),
                    }
                ],
            },
        ],
        "system": [_marked("system-1")],
        "tools": [
            {"name": "tool-1", "input_schema": {}, "cache_control": dict(CC)},
            {"name": "tool-2", "input_schema": {}},
            {"name": "tool-3", "input_schema": {}, "cache_control": dict(CC)},
        ],
    }
    assert len(_marked_names(body)) == 6
    sanitize_request(body)
    assert _marked_names(body) == ["system-1", "user-1", "nested-1", "result-1"]
    assert "cache_control" not in body["tools"][0]
    assert "cache_control" not in body["tools"][2]


def test_sanitize_counts_nested_tool_result_blocks_before_the_tool_result_itself():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "result-1",
                        "content": [_marked("nested-1")],
                        "cache_control": dict(CC),
                    },
                    _marked("user-1"),
                    _marked("user-2"),
                    _marked("user-3"),
                ],
            }
        ]
    }
    sanitize_request(body)
    assert _marked_names(body) == ["result-1", "user-1", "user-2", "user-3"]


@pytest.mark.parametrize("count", [0, 1, 4])
def test_sanitize_leaves_four_or_fewer_cache_controls_alone(count):
    body = {"messages": [{"role": "user", "content": [_marked("m%d" % i) for i in range(count)]}]}
    sanitize_request(body)
    assert _marked_names(body) == ["m%d" % i for i in range(count)]


def test_sanitize_ignores_string_system_and_null_markers():
    body = {
        "system": "plain system prompt",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "null", "cache_control": None}]
                + [_marked("m%d" % i) for i in range(5)],
            }
        ],
    }
    sanitize_request(body)
    assert body["messages"][0]["content"][0]["cache_control"] is None
    assert _marked_names(body) == ["null", "m1", "m2", "m3", "m4"]


def test_sanitize_counts_markers_after_dropping_unsigned_thinking():
    body = {
        "messages": [
            {"role": "user", "content": [_marked("u1"), _marked("u2")]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "x", "cache_control": dict(CC)},
                    _marked("a1"),
                    _marked("a2"),
                ],
            },
        ]
    }
    sanitize_request(body)
    assert _marked_names(body) == ["u1", "u2", "a1", "a2"]


# clean_beta_header ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("", None),
        ("context-1m-2025-08-07", None),
        (" context-1m-2025-08-07 , ", None),
        ("CONTEXT-1M-2025-08-07", None),
        ("prompt-caching-2024-07-31", "prompt-caching-2024-07-31"),
        (
            "interleaved-thinking-2025-05-14,context-1m-2025-08-07,"
            "fine-grained-tool-streaming-2025-05-14",
            "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
        ),
        ("a, context-1m-2025-08-07, b", "a,b"),
    ],
)
def test_clean_beta_header(value, expected):
    assert clean_beta_header(value) == expected


# tool_name_map -----------------------------------------------------------------------


def test_tool_name_map_without_tools_is_amps_canonical_list():
    assert tool_name_map(None) == {name.lower(): name for name in CANONICAL_TOOL_NAMES}
    assert tool_name_map(None)["bash"] == "Bash"
    assert tool_name_map({"not": "a list"})["glob"] == "glob"


def test_tool_name_map_prefers_the_request_tools_then_canonical_names():
    body = {
        "tools": [
            {"name": "edit_file", "input_schema": {}},
            {"name": "bash", "input_schema": {}},
            {"name": "WebFetch", "input_schema": {}},
            "junk",
            {"type": "web_search_20250305"},
        ]
    }
    names = tool_name_map(body["tools"])
    assert names["bash"] == "bash"
    assert names["webfetch"] == "WebFetch"
    assert names["edit_file"] == "edit_file"
    assert names["read"] == "Read"


# rewrite_response --------------------------------------------------------------------


def _response(content):
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-5-20251101",
        "content": content,
        "stop_reason": "end_turn",
    }


def test_rewrite_response_sets_model_signatures_and_tool_casing_and_drops_thinking():
    body = _response(
        [
            {"type": "thinking", "thinking": "let me see"},
            {"type": "redacted_thinking", "data": "zz"},
            {"type": "text", "text": "Running it."},
            {"type": "tool_use", "id": "t1", "name": "BASH", "input": {"cmd": "ls"}},
            {"type": "tool_use", "id": "t2", "name": "unknown_tool", "input": {}, "signature": "s"},
        ]
    )
    result = rewrite_response(body, _ctx())
    assert result is body
    assert body["model"] == REQUESTED
    assert body["content"] == [
        {"type": "redacted_thinking", "data": "zz"},
        {"type": "text", "text": "Running it."},
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"cmd": "ls"}, "signature": ""},
        {"type": "tool_use", "id": "t2", "name": "unknown_tool", "input": {}, "signature": "s"},
    ]


def test_rewrite_response_keeps_thinking_without_tool_use_and_gives_it_a_signature():
    body = _response(
        [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "thinking", "thinking": "signed", "signature": "abc"},
            {"type": "text", "text": "done"},
        ]
    )
    rewrite_response(body, _ctx())
    assert body["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "thinking", "thinking": "signed", "signature": "abc"},
        {"type": "text", "text": "done"},
    ]


def test_rewrite_response_uses_the_request_tools_for_casing():
    request = {"tools": [{"name": "read_File", "input_schema": {}}]}
    body = _response([{"type": "tool_use", "id": "t", "name": "read_file", "input": {}}])
    rewrite_response(body, _ctx(request))
    assert body["content"][0]["name"] == "read_File"


def test_rewrite_response_tolerates_bodies_without_content_or_model():
    body = {"type": "error", "error": {"type": "api_error", "message": "x"}}
    assert rewrite_response(body, _ctx()) == {
        "type": "error",
        "error": {"type": "api_error", "message": "x"},
    }


def test_rewrite_raw_rewrites_json_and_passes_anything_else_through():
    raw = json.dumps(_response([{"type": "text", "text": "héllo"}])).encode("utf-8")
    out = rewrite_raw(raw, _ctx())
    body = json.loads(out.decode("utf-8"))
    assert body["model"] == REQUESTED
    assert "héllo".encode("utf-8") in out
    for data in (b"<html>bad gateway</html>", b"[1,2]", b""):
        assert rewrite_raw(data, _ctx()) is data


# StreamRewriter ----------------------------------------------------------------------


def _sse(event, payload):
    return ("event: %s\ndata: %s\n\n" % (event, json.dumps(payload))).encode("utf-8")


UPSTREAM_MODEL = "claude-opus-4-5-20251101"

STREAM = [
    _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": UPSTREAM_MODEL,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
    ),
    _sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
    ),
    _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me"},
        },
    ),
    _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQ"},
        },
    ),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    _sse("ping", {"type": "ping"}),
    _sse(
        "content_block_start",
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    ),
    _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": 'I will call "tool_use" and "thinking" now'},
        },
    ),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    _sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}},
        },
    ),
    _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"cmd"'},
        },
    ),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 2}),
    _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 30},
        },
    ),
    _sse("message_stop", {"type": "message_stop"}),
]

CHANGED = {0, 1, 9}  # message_start, thinking start, tool_use start


def test_stream_rewriter_changes_only_what_it_must_and_passes_the_rest_as_raw_bytes():
    events = _parse(b"".join(STREAM))
    assert len(events) == len(STREAM)
    rewriter = StreamRewriter(_ctx())
    outputs = [rewriter.event(ev) for ev in events]
    for index, (ev, out) in enumerate(zip(events, outputs)):
        if index not in CHANGED:
            assert out is ev.raw, index
    rewritten = _parse(b"".join(outputs))
    assert [ev.event for ev in rewritten] == [ev.event for ev in events]
    start = json.loads(rewritten[0].data)
    assert start["message"]["model"] == REQUESTED
    assert start["message"]["usage"] == {"input_tokens": 10, "output_tokens": 1}
    thinking = json.loads(rewritten[1].data)["content_block"]
    assert thinking == {"type": "thinking", "thinking": "", "signature": ""}
    tool = json.loads(rewritten[9].data)["content_block"]
    assert tool == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "Bash",
        "input": {},
        "signature": "",
    }


def test_stream_rewriter_reencodes_compactly_with_event_name():
    ev = _parse(STREAM[9])[0]
    out = StreamRewriter(_ctx()).event(ev)
    payload = json.loads(_parse(out)[0].data)
    assert out == encode_event(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")), event="content_block_start"
    )


def test_stream_rewriter_passes_events_that_need_nothing_as_raw():
    rewriter = StreamRewriter(_ctx())
    already = _sse(
        "message_start",
        {"type": "message_start", "message": {"id": "m", "model": REQUESTED, "content": []}},
    )
    signed_tool = _sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "tool_use",
                "id": "t",
                "name": "Bash",
                "input": {},
                "signature": "",
            },
        },
    )
    server_tool = _sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "server_tool_use",
                "id": "t",
                "name": "web_search",
                "input": {},
            },
        },
    )
    broken = b"event: message_start\ndata: {not json\n\n"
    comment = b": keep-alive\n\n"
    for data in (already, signed_tool, server_tool, broken, comment):
        ev = _parse(data)[0]
        assert rewriter.event(ev) is ev.raw


def test_stream_rewriter_handles_providers_that_send_no_event_lines():
    rewriter = StreamRewriter(_ctx())
    data_only = b"".join(chunk.split(b"\n", 1)[1] for chunk in STREAM)
    events = _parse(data_only)
    assert all(ev.event is None for ev in events)
    outputs = [rewriter.event(ev) for ev in events]
    for index, (ev, out) in enumerate(zip(events, outputs)):
        if index not in CHANGED:
            assert out is ev.raw, index
    rewritten = _parse(b"".join(outputs))
    assert rewritten[0].event is None
    assert json.loads(rewritten[0].data)["message"]["model"] == REQUESTED
    assert json.loads(rewritten[9].data)["content_block"]["name"] == "Bash"


def test_stream_rewriter_keeps_the_event_id():
    ev = Event(
        b"",
        event="message_start",
        data=json.dumps({"type": "message_start", "message": {"model": "x"}}),
        id="42",
    )
    out = _parse(StreamRewriter(_ctx()).event(ev))[0]
    assert out.id == "42"
    assert json.loads(out.data)["message"]["model"] == REQUESTED


def test_stream_rewriter_ignores_a_type_that_contradicts_the_event_name():
    data = json.dumps(
        {"type": "content_block_delta", "content_block": {"type": "tool_use", "name": "bash"}}
    )
    ev = Event(b"raw", event="content_block_start", data=data)
    assert StreamRewriter(_ctx()).event(ev) is ev.raw


def test_sanitize_reports_whether_it_changed_anything():
    clean = {"messages": [{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}
    assert sanitize(clean) is False
    unsigned = {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}]}]}
    assert sanitize(unsigned) is True
    signed_tool = {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "signature": "s"}]}]}
    assert sanitize(signed_tool) is True
    markers = {"system": [{"type": "text", "cache_control": {}} for _ in range(5)]}
    assert sanitize(markers) is True
