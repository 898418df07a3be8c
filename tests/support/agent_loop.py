"""An agent loop in each of the four protocols, and a fake model server speaking all four.

Strategy: an independent peer, like ``fakes.py``: nothing here imports ``cliproxy``, so a
translation bug cannot hide in both ends of a test. ``FakeModel`` is one recording HTTP
server that answers each protocol on its own path, as a provider would; the
``*Client`` classes build requests and read answers (whole or streamed) as an SDK of their
protocol would. Together they run the loop of a coding agent: ask → the model calls two
tools at once → send both results → the model answers in text.

The model's behaviour, in every protocol: when the last turn carries tool results, it
answers ``final_text(results)`` (naming each result it got, in order); otherwise it calls
``get_weather {"city": "Paris"}`` and ``get_time {"tz": "Europe/Paris"}`` in parallel.
"""

import http.client
import json
from typing import List, NamedTuple, Optional

from tests.support.fakes import FakeUpstream, JSONReply, SSEReply, sse_events

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    {
        "name": "get_time",
        "description": "Local time in a time zone.",
        "schema": {"type": "object", "properties": {"tz": {"type": ["string", "null"]}}, "required": ["tz"]},
    },
]
CALLS = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})]
RESULTS = {"get_weather": "18C and sunny", "get_time": "14:05"}
QUESTION = "What is the weather and the time in Paris?"


def final_text(results):
    return "Done: " + "; ".join(results)


class Call(NamedTuple):
    id: Optional[str]
    name: str
    arguments: dict


class Turn(NamedTuple):
    """What a client read from one answer."""

    text: str
    calls: List[Call]
    stop: Optional[str]
    model: Optional[str]
    usage: Optional[dict]


# -- the fake model ------------------------------------------------------------------------


class FakeModel(FakeUpstream):
    """A provider of all four protocols on one port: ``/v1/messages`` (Anthropic),
    ``/v1/chat/completions`` (Chat), ``/v1/responses`` (Responses),
    ``/v1beta/models/M:generateContent`` and ``:streamGenerateContent`` (Gemini)."""

    def __init__(self):
        super().__init__()
        self.route("POST", "/v1/messages", _anthropic)
        self.route("POST", "/v1/chat/completions", _chat)
        self.route("POST", "/v1/responses", _responses)
        self.route("POST", "/v1beta/models/", _gemini)

    def bodies(self, path_prefix):
        return [json.loads(r.body) for r in self.requests if r.path.startswith(path_prefix)]


def _anthropic(request):
    body = json.loads(request.body)
    last = body["messages"][-1]
    content = last["content"] if isinstance(last["content"], list) else []
    results = [_text_of(b["content"]) for b in content if b.get("type") == "tool_result"]
    model = body["model"]
    if results:
        blocks = [{"type": "text", "text": final_text(results)}]
        stop = "end_turn"
    else:
        blocks = [{"type": "text", "text": "Let me check."}] + [
            {"type": "tool_use", "id": "toolu_%d" % i, "name": name, "input": args}
            for i, (name, args) in enumerate(CALLS)
        ]
        stop = "tool_use"
    usage = {"input_tokens": 30, "output_tokens": 12, "cache_read_input_tokens": 5}
    if not body.get("stream"):
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": blocks,
                   "stop_reason": stop, "stop_sequence": None, "usage": usage}
        return JSONReply(body=message)
    events = [{"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
                                                    "model": model, "content": [], "stop_reason": None,
                                                    "usage": {"input_tokens": 30, "output_tokens": 1,
                                                              "cache_read_input_tokens": 5}}},
              {"type": "ping"}]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            text = block["text"]
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                events.append({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})
        else:
            start = dict(block, input={})
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            raw = json.dumps(block["input"])
            for piece in (raw[:5], raw[5:]):
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": 12}})
    events.append({"type": "message_stop"})
    return SSEReply(sse_events(*events))


def _chat(request):
    body = json.loads(request.body)
    results = []
    for message in reversed(body["messages"]):
        if message["role"] != "tool":
            break
        results.insert(0, _text_of(message["content"]))
    model = body["model"]
    if results:
        message = {"role": "assistant", "content": final_text(results)}
        finish = "stop"
    else:
        message = {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_%d" % i, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(CALLS)]}
        finish = "tool_calls"
    usage = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
             "prompt_tokens_details": {"cached_tokens": 5}}
    if not body.get("stream"):
        return JSONReply(body={"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                               "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                               "usage": usage})
    chunks = []

    def chunk(delta, finish_reason=None):
        chunks.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

    chunk({"role": "assistant", "content": ""})
    text = message["content"]
    chunk({"content": text[: len(text) // 2]})
    chunk({"content": text[len(text) // 2 :]})
    for index, call in enumerate(message.get("tool_calls", [])):
        arguments = call["function"]["arguments"]
        chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                               "function": {"name": call["function"]["name"], "arguments": ""}}]})
        for piece in (arguments[:4], arguments[4:]):
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [], "usage": usage})
    return SSEReply(sse_events(*chunks, "[DONE]", event_names=[None] * (len(chunks) + 1)))


def _responses(request):
    body = json.loads(request.body)
    items = body["input"] if isinstance(body["input"], list) else []
    results = []
    for item in reversed(items):
        if item.get("type") != "function_call_output":
            break
        results.insert(0, _text_of(item["output"]))
    model = body["model"]
    if results:
        output = [{"type": "message", "id": "msg_f", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": final_text(results), "annotations": []}]}]
    else:
        output = [{"type": "message", "id": "msg_f", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]}] + [
            {"type": "function_call", "id": "fc_%d" % i, "call_id": "call_r%d" % i, "name": name,
             "arguments": json.dumps(args), "status": "completed"} for i, (name, args) in enumerate(CALLS)]
    response = {"id": "resp_fake", "object": "response", "created_at": 1, "status": "completed", "model": model,
                "output": output, "usage": {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42,
                                            "input_tokens_details": {"cached_tokens": 5},
                                            "output_tokens_details": {"reasoning_tokens": 0}}}
    if not body.get("stream"):
        return JSONReply(body=response)
    events = []
    seq = iter(range(1000))

    def event(payload):
        payload["sequence_number"] = next(seq)
        events.append(payload)

    event({"type": "response.created", "response": dict(response, status="in_progress", output=[], usage=None)})
    for index, item in enumerate(output):
        if item["type"] == "message":
            event({"type": "response.output_item.added", "output_index": index, "item": dict(item, content=[], status="in_progress")})
            event({"type": "response.content_part.added", "item_id": item["id"], "output_index": index, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}})
            text = item["content"][0]["text"]
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                event({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                       "content_index": 0, "delta": piece})
            event({"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                   "content_index": 0, "text": text})
            event({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                   "content_index": 0, "part": item["content"][0]})
        else:
            event({"type": "response.output_item.added", "output_index": index, "item": dict(item, arguments="", status="in_progress")})
            for piece in (item["arguments"][:4], item["arguments"][4:]):
                event({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                       "output_index": index, "delta": piece})
            event({"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": index,
                   "arguments": item["arguments"]})
        event({"type": "response.output_item.done", "output_index": index, "item": item})
    event({"type": "response.completed", "response": response})
    return SSEReply(sse_events(*events))


def _gemini(request):
    body = json.loads(request.body)
    model, _, method = request.path.rsplit("/", 1)[-1].partition(":")
    last = body["contents"][-1]
    results = [p["functionResponse"] for p in last.get("parts", []) if "functionResponse" in p]
    if results:
        texts = [_text_of(r["response"].get("result", r["response"].get("output", r["response"]))) for r in results]
        parts = [{"text": final_text(texts)}]
    else:
        parts = [{"text": "Let me check."}] + [{"functionCall": {"name": name, "args": args}} for name, args in CALLS]
    usage = {"promptTokenCount": 30, "candidatesTokenCount": 12, "totalTokenCount": 42, "cachedContentTokenCount": 5}
    if method == "generateContent":
        return JSONReply(body={"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                                               "index": 0}], "usageMetadata": usage, "modelVersion": model,
                               "responseId": "gem-fake"})
    assert "alt=sse" in request.query, "the proxy asks Gemini for SSE"
    chunks = []
    text = parts[0]["text"]
    for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
        chunks.append({"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}],
                       "usageMetadata": {"promptTokenCount": 30, "totalTokenCount": 30}, "modelVersion": model,
                       "responseId": "gem-fake"})
    last_chunk = {"candidates": [{"content": {"role": "model", "parts": parts[1:] or [{"text": ""}]},
                                  "finishReason": "STOP", "index": 0}],
                  "usageMetadata": usage, "modelVersion": model, "responseId": "gem-fake"}
    chunks.append(last_chunk)
    return SSEReply(sse_events(*chunks, event_names=[None] * len(chunks)))


def _text_of(content):
    """The text of a tool result in any protocol's shape (string, blocks, parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text_of(item) for item in content)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return content["text"]
        for key in ("result", "output", "content"):
            if key in content:
                return _text_of(content[key])
        return json.dumps(content)
    return str(content)


# -- SSE, read by the clients -----------------------------------------------------------


def sse_payloads(data):
    """(event name, parsed JSON or the raw string) for each event of an SSE body."""
    events = []
    for block in data.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        name, lines = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
        if not lines:
            continue
        text = "\n".join(lines)
        try:
            events.append((name, json.loads(text)))
        except ValueError:
            events.append((name, text))
    return events


# -- the clients ---------------------------------------------------------------------------


class Client:
    """Talks to the proxy at ``port`` with ``key``, as an SDK of one protocol would.
    ``ask(model, stream)`` runs the first turn, ``answer(...)`` the turn carrying the
    tool results; both return a ``Turn``. ``history`` grows as a real agent's would."""

    def __init__(self, port, key):
        self.port = port
        self.key = key
        self.history = []
        self.last_status = None
        self.last_headers = None

    def post(self, path, body):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json",
                                                               "Authorization": "Bearer " + self.key})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        self.last_status = response.status
        self.last_headers = {k.lower(): v for k, v in response.getheaders()}
        if response.status != 200:
            raise AssertionError("HTTP %d: %s" % (response.status, data[:500]))
        return data


class AnthropicClient(Client):
    def request(self, model, stream):
        return {"model": model, "max_tokens": 1024, "stream": stream, "system": "You are a weather bot.",
                "messages": self.history,
                "tools": [{"name": t["name"], "description": t["description"], "input_schema": t["schema"]} for t in TOOLS]}

    def ask(self, model, stream):
        self.history = [{"role": "user", "content": QUESTION}]
        return self._turn(model, stream)

    def answer(self, model, stream, turn):
        blocks = ([{"type": "text", "text": turn.text}] if turn.text else []) + [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in turn.calls]
        self.history.append({"role": "assistant", "content": blocks})
        self.history.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": [{"type": "text", "text": RESULTS[c.name]}]}
            for c in turn.calls]})
        return self._turn(model, stream)

    def _turn(self, model, stream):
        data = self.post("/v1/messages", self.request(model, stream))
        if not stream:
            message = json.loads(data)
            calls = [Call(b["id"], b["name"], b["input"]) for b in message["content"] if b["type"] == "tool_use"]
            text = "".join(b["text"] for b in message["content"] if b["type"] == "text")
            return Turn(text, calls, message["stop_reason"], message["model"], message["usage"])
        blocks, stop, model_seen, usage = {}, None, None, {}
        names = [name for name, _ in sse_payloads(data)]
        assert names[0] == "message_start" and names[-1] == "message_stop", names
        for name, payload in sse_payloads(data):
            assert payload["type"] == name
            if name == "message_start":
                model_seen = payload["message"]["model"]
                usage.update(payload["message"]["usage"])
            elif name == "content_block_start":
                blocks[payload["index"]] = dict(payload["content_block"], partial="")
            elif name == "content_block_delta":
                delta = payload["delta"]
                block = blocks[payload["index"]]
                if delta["type"] == "text_delta":
                    block["text"] += delta["text"]
                elif delta["type"] == "input_json_delta":
                    block["partial"] += delta["partial_json"]
            elif name == "message_delta":
                stop = payload["delta"]["stop_reason"]
                usage.update(payload.get("usage") or {})
            elif name == "error":
                raise AssertionError(payload)
        calls = [Call(b["id"], b["name"], json.loads(b["partial"] or "{}")) for _, b in sorted(blocks.items())
                 if b["type"] == "tool_use"]
        text = "".join(b["text"] for _, b in sorted(blocks.items()) if b["type"] == "text")
        return Turn(text, calls, stop, model_seen, usage)


class ChatClient(Client):
    def request(self, model, stream):
        body = {"model": model, "stream": stream, "messages": self.history,
                "tools": [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                            "parameters": t["schema"]}} for t in TOOLS]}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def ask(self, model, stream):
        self.history = [{"role": "system", "content": "You are a weather bot."}, {"role": "user", "content": QUESTION}]
        return self._turn(model, stream)

    def answer(self, model, stream, turn):
        self.history.append({"role": "assistant", "content": turn.text or None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in turn.calls]})
        for c in turn.calls:
            self.history.append({"role": "tool", "tool_call_id": c.id, "content": RESULTS[c.name]})
        return self._turn(model, stream)

    def _turn(self, model, stream):
        data = self.post("/v1/chat/completions", self.request(model, stream))
        if not stream:
            completion = json.loads(data)
            choice = completion["choices"][0]
            calls = [Call(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                     for c in choice["message"].get("tool_calls") or []]
            return Turn(choice["message"].get("content") or "", calls, choice["finish_reason"],
                        completion["model"], completion.get("usage"))
        payloads = sse_payloads(data)
        assert payloads[-1][1] == "[DONE]", payloads[-1]
        text, calls, stop, model_seen, usage = "", {}, None, None, None
        for _, chunk in payloads[:-1]:
            assert "error" not in chunk, chunk
            model_seen = chunk["model"]
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk["choices"]:
                delta = choice.get("delta") or {}
                text += delta.get("content") or ""
                for call in delta.get("tool_calls") or []:
                    slot = calls.setdefault(call["index"], {"id": None, "name": "", "arguments": ""})
                    slot["id"] = call.get("id") or slot["id"]
                    function = call.get("function") or {}
                    slot["name"] += function.get("name") or ""
                    slot["arguments"] += function.get("arguments") or ""
                stop = choice.get("finish_reason") or stop
        return Turn(text, [Call(c["id"], c["name"], json.loads(c["arguments"] or "{}")) for _, c in sorted(calls.items())],
                    stop, model_seen, usage)


class ResponsesClient(Client):
    def request(self, model, stream):
        return {"model": model, "stream": stream, "instructions": "You are a weather bot.", "input": self.history,
                "tools": [{"type": "function", "name": t["name"], "description": t["description"],
                           "parameters": t["schema"]} for t in TOOLS]}

    def ask(self, model, stream):
        self.history = [{"role": "user", "content": QUESTION}]
        return self._turn(model, stream)

    def answer(self, model, stream, turn):
        if turn.text:
            self.history.append({"type": "message", "role": "assistant",
                                 "content": [{"type": "output_text", "text": turn.text}]})
        for c in turn.calls:
            self.history.append({"type": "function_call", "call_id": c.id, "name": c.name,
                                 "arguments": json.dumps(c.arguments)})
        for c in turn.calls:
            self.history.append({"type": "function_call_output", "call_id": c.id, "output": RESULTS[c.name]})
        return self._turn(model, stream)

    def _turn(self, model, stream):
        data = self.post("/v1/responses", self.request(model, stream))
        if not stream:
            return self._read(json.loads(data))
        payloads = sse_payloads(data)
        assert payloads[0][0] == "response.created", payloads[0]
        assert payloads[-1][0] in ("response.completed", "response.incomplete"), payloads[-1]
        numbers = [p["sequence_number"] for _, p in payloads]
        assert numbers == sorted(numbers)
        deltas = "".join(p["delta"] for n, p in payloads if n == "response.output_text.delta")
        turn = self._read(payloads[-1][1]["response"])
        assert deltas == turn.text
        return turn

    @staticmethod
    def _read(response):
        text, calls = "", []
        for item in response["output"]:
            if item["type"] == "message":
                text += "".join(p["text"] for p in item["content"] if p["type"] == "output_text")
            elif item["type"] == "function_call":
                calls.append(Call(item["call_id"], item["name"], json.loads(item["arguments"])))
        return Turn(text, calls, response["status"], response["model"], response.get("usage"))


class GeminiClient(Client):
    def request(self, model, stream):
        return {"systemInstruction": {"parts": [{"text": "You are a weather bot."}]}, "contents": self.history,
                "tools": [{"functionDeclarations": [{"name": t["name"], "description": t["description"],
                                                     "parameters": t["schema"]} for t in TOOLS]}]}

    def ask(self, model, stream):
        self.history = [{"role": "user", "parts": [{"text": QUESTION}]}]
        return self._turn(model, stream)

    def answer(self, model, stream, turn):
        parts = ([{"text": turn.text}] if turn.text else []) + [
            {"functionCall": {"name": c.name, "args": c.arguments}} for c in turn.calls]
        self.history.append({"role": "model", "parts": parts})
        self.history.append({"role": "user", "parts": [
            {"functionResponse": {"name": c.name, "response": {"result": RESULTS[c.name]}}} for c in turn.calls]})
        return self._turn(model, stream)

    def _turn(self, model, stream):
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        data = self.post("/v1beta/models/%s:%s" % (model, method), self.request(model, stream))
        chunks = [p for _, p in sse_payloads(data)] if stream else [json.loads(data)]
        text, calls, stop, model_seen, usage = "", [], None, None, None
        for chunk in chunks:
            assert "error" not in chunk, chunk
            model_seen = chunk.get("modelVersion", model_seen)
            usage = chunk.get("usageMetadata", usage)
            for candidate in chunk.get("candidates", []):
                for part in candidate.get("content", {}).get("parts", []):
                    if "text" in part and not part.get("thought"):
                        text += part["text"]
                    if "functionCall" in part:
                        call = part["functionCall"]
                        calls.append(Call(call.get("id"), call["name"], call.get("args", {})))
                stop = candidate.get("finishReason", stop)
        return Turn(text, calls, stop, model_seen, usage)


CLIENTS = {"anthropic": AnthropicClient, "chat": ChatClient, "responses": ResponsesClient, "gemini": GeminiClient}
# The stop reason each protocol reports for a turn that calls tools, and for a final one.
TOOL_STOP = {"anthropic": "tool_use", "chat": "tool_calls", "responses": "completed", "gemini": "STOP"}
END_STOP = {"anthropic": "end_turn", "chat": "stop", "responses": "completed", "gemini": "STOP"}
