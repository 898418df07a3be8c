"""OpenAI Chat Completions ↔ the neutral model (``translate.ir``): requests, whole answers
and streamed answers, for Chat clients and for OpenAI-compatible providers.

Strategy: as a provider protocol this codec talks to OpenAI itself and to the servers that
copy its API (vLLM, SGLang, Ollama, llama.cpp, LM Studio, DeepSeek, Qwen, OpenRouter), so
its readers accept what those servers are known to send besides the documented shape:
reasoning as ``reasoning_content`` or ``reasoning``, usage in the finish chunk or in a
chunk of its own, a stream ending at EOF after its ``finish_reason`` without ``[DONE]``,
tool calls without ids, or with a new id under an index already used. Its writers emit
the documented shape with the most widely accepted field spellings (``max_tokens``,
string contents where a message is plain text).

Requests: system and developer messages before the first other message are the
conversation's ``system``; later ones stay in place as ``Role.SYSTEM``. Tool messages are
``ToolResult`` parts of one user message, which also takes the user message right after
them (Anthropic's shape); written back, a user message holding results becomes one
``tool`` message per result, then one user message with the results' images and the
message's other parts. Reasoning is read from assistant messages but never written:
OpenAI-compatible servers do not take it back.

Streams: chunks hold deltas of three kinds (reasoning, content, tool calls keyed by
``index``); a change of kind closes the open block. A tool call that appears while another
one streams is held back whole until that one closes (at the finish chunk, usually), as
the neutral model's blocks never overlap. A chunk whose one effect is a text or
reasoning string is learnt as a shape (``codecs.shapes``), and later chunks of that shape
are read without parsing them. The writer builds each delta from byte templates made
once per answer; the closing chunks are written at ``end`` because usage may still
arrive after ``finish``.
"""

from typing import Dict, List, Optional

from cliproxy.config.model import Protocol
from cliproxy.errors import BadRequest, ProxyError, UpstreamError
from cliproxy.http.sse import event_frame
from cliproxy.jsontext import loads
from cliproxy.routing.suffix import LEVELS, ThinkingKind, ThinkingSuffix
from cliproxy.translate.codecs.common import ShapedEventReader, data_url, dumps, json_string, log_dropped, parse_data_url
from cliproxy.translate.codecs.shapes import DeltaShape
from cliproxy.translate.context import encode_json_value
from cliproxy.translate.errors import error_event
from cliproxy.translate.ir import (
    Answer,
    AnswerContext,
    AnswerSink,
    BlockKind,
    Conversation,
    Media,
    Message,
    Role,
    Stop,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolResult,
    Usage,
    name_results,
    parse_arguments,
)
from cliproxy.translate.thinking import apply_suffix

__all__ = [
    "PROTOCOL",
    "StreamReader",
    "StreamWriter",
    "read_request",
    "read_response",
    "read_usage",
    "write_request",
    "write_response",
]

PROTOCOL = Protocol.OPENAI

# Top-level request fields this codec reads. ``stream_options`` is read by the
# translator itself (include_usage), so it is known here but not dropped.
_READ_FIELDS = frozenset(
    (
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "stream",
        "stream_options",
        "reasoning_effort",
        "user",
        "n",
    )
)

_SYSTEM_ROLES = ("system", "developer")
_ROLES_TAKEN = "system, developer, user, assistant or tool"

_TOOL_CHOICE_MODES = {
    "auto": ToolChoiceMode.AUTO,
    "required": ToolChoiceMode.ANY,
    "none": ToolChoiceMode.NONE,
}
_TOOL_CHOICE_NAMES = {mode: name for name, mode in _TOOL_CHOICE_MODES.items()}

# reasoning_effort values → the request's thinking setting.
_EFFORTS = {level: ThinkingSuffix(ThinkingKind.LEVEL, level=level) for level in LEVELS}
_EFFORTS["none"] = ThinkingSuffix(ThinkingKind.NONE)

# finish_reason → Stop. A plain "stop" cannot tell a stop sequence from the end of a turn.
_FINISH_STOPS = {
    "stop": Stop.END_TURN,
    "length": Stop.MAX_TOKENS,
    "tool_calls": Stop.TOOL_USE,
    "function_call": Stop.TOOL_USE,
    "content_filter": Stop.REFUSAL,
}
_STOP_FINISHES = {
    Stop.END_TURN: "stop",
    Stop.STOP_SEQUENCE: "stop",
    Stop.MAX_TOKENS: "length",
    Stop.TOOL_USE: "tool_calls",
    Stop.REFUSAL: "content_filter",
    Stop.PAUSE: "stop",
}
# OpenRouter ends a failed stream with this finish_reason (its error object alongside).
_ERROR_FINISH = "error"

# A provider's error ``type`` (or ``code``) → (HTTP status, our error kind).
_ERROR_KINDS = {
    "invalid_request_error": (400, "invalid_request_error"),
    "authentication_error": (401, "authentication_error"),
    "permission_error": (403, "permission_error"),
    "not_found_error": (404, "not_found_error"),
    "rate_limit_error": (429, "rate_limit_error"),
    "rate_limit_exceeded": (429, "rate_limit_error"),
    "insufficient_quota": (402, "payment_required"),
    "server_error": (500, "api_error"),
    "api_error": (500, "api_error"),
}
_KIND_OF_STATUS = {status: kind for status, kind in _ERROR_KINDS.values()}

# OpenAI's own models that refuse ``max_tokens`` and want ``max_completion_tokens``:
# the o-series (o1, o3, o4-mini...) and gpt-5*. Every other server takes max_tokens.
_COMPLETION_TOKENS_PREFIXES = ("o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9", "gpt-5")

# Texts that were separate blocks (system prompts, a tool's output) are joined with a
# blank line; the pieces of one assistant reply are joined as they are.
_BLOCK_SEPARATOR = "\n\n"
# What a failed tool's output starts with, since a tool message has no error flag.
_ERROR_RESULT_PREFIX = "Error: "
_ASSISTANT = "assistant"


# -- requests ----------------------------------------------------------------------------


def read_request(body: dict, model: Optional[str] = None, stream: Optional[bool] = None) -> Conversation:
    """A Chat Completions request body → ``Conversation``. ``model`` is not needed (the
    body names it; the conversation does not carry it); ``stream``, when given, wins over
    the body's. Raises ``BadRequest`` for a body that is not an object, messages that are
    not objects or have an unknown role, tool calls and tool messages without ids, tools
    without names, and ``n`` > 1 (one answer is all a translated call can give)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    dropped = [key for key in body if key not in _READ_FIELDS]
    n = _integer(body.get("n"))
    if n is not None and n > 1:
        raise BadRequest("n greater than 1 is not supported for this model: one choice is all it can give")
    conversation = Conversation()
    _read_messages(body.get("messages"), conversation, dropped)
    conversation.tools = _read_tools(body.get("tools"), dropped)
    conversation.tool_choice = _read_tool_choice(body.get("tool_choice"), dropped)
    conversation.parallel_tool_calls = _optional(body, "parallel_tool_calls", _boolean, dropped)
    limit = _optional(body, "max_completion_tokens", _integer, dropped)
    if limit is None:
        limit = _optional(body, "max_tokens", _integer, dropped)
    conversation.max_output_tokens = limit
    conversation.temperature = _optional(body, "temperature", _number, dropped)
    conversation.top_p = _optional(body, "top_p", _number, dropped)
    conversation.top_k = _optional(body, "top_k", _integer, dropped)
    conversation.stop = _read_stop(body.get("stop"), dropped)
    conversation.thinking = _optional(body, "reasoning_effort", _effort, dropped)
    conversation.user = _optional(body, "user", _string, dropped)
    conversation.stream = stream if stream is not None else _boolean(body.get("stream")) is True
    log_dropped(PROTOCOL, True, dropped)
    return name_results(conversation)


def write_request(conversation: Conversation, model: str) -> dict:
    """``conversation`` → a Chat Completions request body for upstream ``model``.

    ``max_output_tokens`` is written as ``max_completion_tokens`` for OpenAI's o-series
    and gpt-5 models (which refuse ``max_tokens``) and as ``max_tokens`` for every other
    model (the spelling OpenAI-compatible servers all take). A stream asks for usage
    (``stream_options.include_usage``). ``tool_choice`` and ``parallel_tool_calls`` are
    written only with tools (OpenAI refuses them alone); ``top_k`` and thinking parts are
    not written (OpenAI refuses the one; no server takes the other back)."""
    dropped = []  # type: List[str]
    messages = []  # type: List[dict]
    system = _joined_texts(conversation.system)
    if system:
        messages.append({"role": "system", "content": system})
    for message in conversation.messages:
        _write_message(message, messages, dropped)
    body = {"model": model, "messages": messages}  # type: dict
    if conversation.tools:
        body["tools"] = [_write_tool(tool) for tool in conversation.tools]
        if conversation.tool_choice is not None:
            body["tool_choice"] = _write_tool_choice(conversation.tool_choice)
        if conversation.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = conversation.parallel_tool_calls
    if conversation.max_output_tokens is not None:
        body[_max_tokens_field(model)] = conversation.max_output_tokens
    if conversation.temperature is not None:
        body["temperature"] = conversation.temperature
    if conversation.top_p is not None:
        body["top_p"] = conversation.top_p
    if conversation.top_k is not None:
        dropped.append("top_k")
    if conversation.stop:
        body["stop"] = list(conversation.stop)
    if conversation.user is not None:
        body["user"] = conversation.user
    if conversation.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    apply_suffix(PROTOCOL, body, conversation.thinking, model)
    log_dropped(PROTOCOL, False, dropped)
    return body


def _read_messages(value, conversation: Conversation, dropped: List[str]) -> None:
    """Append the ``messages`` array to ``conversation`` (see the module docstring)."""
    if not isinstance(value, list):
        raise BadRequest("messages must be an array of message objects")
    messages = conversation.messages
    results = None  # type: Optional[Message]  # made by the tool messages just read
    for position, message in enumerate(value):
        if not isinstance(message, dict):
            raise BadRequest("messages[%d] must be an object" % position)
        role = message.get("role")
        where = "messages[%d]" % position
        if "name" in message:
            dropped.append("messages.name")
        if role == "tool":
            if results is None:
                results = Message(Role.USER)
                messages.append(results)
            results.parts.append(_read_tool_message(message, where, dropped))
            continue
        if role in _SYSTEM_ROLES:
            texts = _texts_only(_read_content(message.get("content"), where, dropped), dropped)
            if not messages:
                conversation.system.extend(texts)
            elif texts:
                messages.append(Message(Role.SYSTEM, texts))
        elif role == "user":
            parts = _read_content(message.get("content"), where, dropped)
            if results is not None:
                results.parts.extend(parts)
            elif parts:
                messages.append(Message(Role.USER, parts))
        elif role == _ASSISTANT:
            parts = _read_assistant(message, where, dropped)
            if parts:
                messages.append(Message(Role.ASSISTANT, parts))
        else:
            raise BadRequest("%s.role must be %s" % (where, _ROLES_TAKEN))
        results = None


def _read_assistant(message: dict, where: str, dropped: List[str]) -> list:
    """An assistant message's parts: its reasoning, its text, then its tool calls."""
    parts = []  # type: list
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(Thinking(reasoning))
    parts.extend(_texts_only(_read_content(message.get("content"), where, dropped), dropped))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(Text(refusal))
    if message.get("function_call") is not None:
        dropped.append("messages.function_call")
    calls = message.get("tool_calls")
    if calls is None:
        return parts
    if not isinstance(calls, list):
        raise BadRequest("%s.tool_calls must be an array" % where)
    for index, call in enumerate(calls):
        parts.append(_read_tool_call(call, "%s.tool_calls[%d]" % (where, index)))
    return parts


def _read_tool_call(call, where: str) -> ToolCall:
    """One ``tool_calls`` entry of an assistant message (``arguments`` a JSON string;
    an object, which some clients send, is taken as it is)."""
    if not isinstance(call, dict):
        raise BadRequest("%s must be an object" % where)
    if call.get("type", "function") != "function":
        raise BadRequest('%s.type must be "function": no other kind of call can be sent on' % where)
    call_id = call.get("id")
    function = call.get("function")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("%s.id must be a non-empty string" % where)
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequest("%s.function.name must be a string" % where)
    return ToolCall(call_id, function["name"], _arguments(function.get("arguments")))


def _read_tool_message(message: dict, where: str, dropped: List[str]) -> ToolResult:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("%s.tool_call_id must be a non-empty string" % where)
    return ToolResult(call_id, _read_content(message.get("content"), where, dropped))


def _read_content(content, where: str, dropped: List[str]) -> list:
    """A message's ``content`` (null, a string or an array of parts) → Text and Media
    parts; empty texts are left out."""
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, list):
        raise BadRequest("%s.content must be a string or an array of content parts" % where)
    parts = []  # type: list
    for index, item in enumerate(content):
        part = _read_part(item, "%s.content[%d]" % (where, index), dropped)
        if part is not None:
            parts.append(part)
    return parts


def _read_part(item, where: str, dropped: List[str]):
    """One content part → Text, Media, or None (empty, or no counterpart: logged)."""
    if not isinstance(item, dict):
        raise BadRequest("%s must be an object" % where)
    kind = item.get("type")
    if kind == "text" or kind == "refusal":
        text = item.get(kind)
        if not isinstance(text, str):
            raise BadRequest("%s.%s must be a string" % (where, kind))
        return Text(text) if text else None
    if kind == "image_url":
        return _read_image(item, where, dropped)
    if kind == "file":
        return _read_file(item, where)
    dropped.append("content part %s" % (kind if isinstance(kind, str) else "?"))
    return None


def _read_image(item: dict, where: str, dropped: List[str]) -> Media:
    """``{"image_url": {"url", "detail"}}``; a bare URL string, which some clients send,
    is taken too. ``detail`` has no counterpart."""
    image = item.get("image_url")
    if isinstance(image, dict):
        if "detail" in image:
            dropped.append("image_url.detail")
        image = image.get("url")
    if not isinstance(image, str) or not image:
        raise BadRequest("%s.image_url.url must be a non-empty string" % where)
    inline = parse_data_url(image)
    if inline is not None:
        return Media(inline[0], data=inline[1])
    return Media(url=image)


def _read_file(item: dict, where: str) -> Media:
    """``{"file": {"file_data", "filename"}}``: ``file_data`` a base64 data URL, or bare
    base64, which OpenAI takes as a PDF (the only kind its file parts accept). A
    ``file_id`` names a file uploaded to OpenAI, which no other provider can read."""
    file = item.get("file")
    if not isinstance(file, dict):
        raise BadRequest("%s.file must be an object" % where)
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        if file.get("file_id") is not None:
            raise BadRequest("%s.file.file_id: uploaded files cannot be sent to this model; send file_data" % where)
        raise BadRequest("%s.file.file_data must be a non-empty string" % where)
    filename = file.get("filename")
    filename = filename if isinstance(filename, str) else None
    inline = parse_data_url(data)
    if inline is None:
        return Media("application/pdf", data=data, filename=filename)
    return Media(inline[0], data=inline[1], filename=filename)


def _texts_only(parts: list, dropped: List[str]) -> List[Text]:
    """The Text parts of a system or assistant message; its media have no place there."""
    texts = [part for part in parts if isinstance(part, Text)]
    if len(texts) != len(parts):
        dropped.append("media in system or assistant messages")
    return texts


def _read_tools(value, dropped: List[str]) -> List[Tool]:
    """``tools``: function tools; other kinds (custom, built-in) have no counterpart."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("tools must be an array")
    tools = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise BadRequest("tools[%d] must be an object" % index)
        kind = entry.get("type", "function")
        if kind != "function":
            dropped.append("tools of type %s" % (kind if isinstance(kind, str) else "?"))
            continue
        function = entry.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise BadRequest("tools[%d].function.name must be a non-empty string" % index)
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise BadRequest("tools[%d].function.parameters must be a JSON Schema object" % index)
        if "strict" in function:
            dropped.append("tools.function.strict")
        tool = Tool(function["name"], _string(function.get("description")))
        if parameters is not None:
            tool.schema = parameters
        tools.append(tool)
    return tools


def _read_tool_choice(value, dropped: List[str]) -> Optional[ToolChoice]:
    """``"auto" | "none" | "required" | {"type": "function", "function": {"name"}}``."""
    if value is None:
        return None
    if isinstance(value, str) and value in _TOOL_CHOICE_MODES:
        return ToolChoice(_TOOL_CHOICE_MODES[value])
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return ToolChoice(ToolChoiceMode.TOOL, function["name"])
    dropped.append("tool_choice")
    return None


def _read_stop(value, dropped: List[str]) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    dropped.append("stop")
    return []


def _optional(body: dict, key: str, convert, dropped: List[str]):
    """``convert(body[key])``; a value it refuses (None) is dropped and named."""
    value = body.get(key)
    if value is None:
        return None
    converted = convert(value)
    if converted is None:
        dropped.append(key)
    return converted


def _integer(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _boolean(value) -> Optional[bool]:
    return value if isinstance(value, bool) else None


def _string(value) -> Optional[str]:
    return value if isinstance(value, str) else None


def _effort(value) -> Optional[ThinkingSuffix]:
    return _EFFORTS.get(value) if isinstance(value, str) else None


def _arguments(value) -> dict:
    """Tool-call arguments as sent (a JSON string, or an object) → an object."""
    if isinstance(value, str):
        return parse_arguments(value)
    if isinstance(value, dict):
        return value
    return {}


def _write_message(message: Message, messages: List[dict], dropped: List[str]) -> None:
    """Append the Chat messages for one neutral message (one, or several for a user
    message holding tool results); a message left with nothing to say is not written."""
    if message.role is Role.SYSTEM:
        text = _joined_texts([part for part in message.parts if isinstance(part, Text)])
        if text:
            messages.append({"role": "system", "content": text})
    elif message.role is Role.ASSISTANT:
        written = _write_assistant(message.parts, dropped)
        if written is not None:
            messages.append(written)
    else:
        _write_user(message.parts, messages, dropped)


def _write_assistant(parts: list, dropped: List[str]) -> Optional[dict]:
    text = "".join(part.text for part in parts if isinstance(part, Text))
    calls = [_write_call(part, part.id) for part in parts if isinstance(part, ToolCall)]
    if any(isinstance(part, Media) for part in parts):
        dropped.append("media in assistant messages")
    if not text and not calls:
        return None
    written = {"role": _ASSISTANT, "content": text or None}  # type: dict
    if calls:
        written["tool_calls"] = calls
    return written


def _write_call(call: ToolCall, call_id: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": dumps(call.arguments)}}


def _write_user(parts: list, messages: List[dict], dropped: List[str]) -> None:
    """Tool results first, one ``tool`` message each (text only: their media follow in
    the user message), then one user message with those media and the other parts."""
    rest = []  # type: list
    for part in parts:
        if isinstance(part, ToolResult):
            texts = [item for item in part.content if isinstance(item, Text)]
            rest.extend(item for item in part.content if isinstance(item, Media))
            content = _joined_texts(texts)
            if part.is_error:
                content = _ERROR_RESULT_PREFIX + content
            messages.append({"role": "tool", "tool_call_id": part.call_id, "content": content})
        elif isinstance(part, (Text, Media)):
            rest.append(part)
    if len(rest) == 1 and isinstance(rest[0], Text):
        messages.append({"role": "user", "content": rest[0].text})
        return
    content = [written for written in (_write_part(part, dropped) for part in rest) if written is not None]
    if content:
        messages.append({"role": "user", "content": content})


def _write_part(part, dropped: List[str]) -> Optional[dict]:
    """A Text or Media part as a content part: images as ``image_url`` (a data URL or
    the URL), other inline media as ``file``. A URL to something not an image cannot be
    sent (file parts take inline data only)."""
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    is_image = part.media_type is None or part.media_type.startswith("image/")
    if part.data is not None:
        url = data_url(part.media_type, part.data)
        if is_image:
            return {"type": "image_url", "image_url": {"url": url}}
        file = {"file_data": url}
        if part.filename is not None:
            file["filename"] = part.filename
        return {"type": "file", "file": file}
    if part.url is not None and is_image:
        return {"type": "image_url", "image_url": {"url": part.url}}
    dropped.append("media by URL that is not an image")
    return None


def _write_tool(tool: Tool) -> dict:
    function = {"name": tool.name}  # type: dict
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.schema
    return {"type": "function", "function": function}


def _write_tool_choice(choice: ToolChoice):
    if choice.mode is ToolChoiceMode.TOOL:
        return {"type": "function", "function": {"name": choice.name}}
    return _TOOL_CHOICE_NAMES[choice.mode]


def _joined_texts(texts: List[Text]) -> str:
    return _BLOCK_SEPARATOR.join(text.text for text in texts)


def _max_tokens_field(model: str) -> str:
    return "max_completion_tokens" if model.lower().startswith(_COMPLETION_TOKENS_PREFIXES) else "max_tokens"


# -- whole answers -----------------------------------------------------------------------


def read_response(document: dict) -> Answer:
    """A ``chat.completion`` object → ``Answer`` (its first choice). Reasoning
    (``reasoning_content``, or ``reasoning``) comes first, then the text, then the tool
    calls; a call without an id gets one made from the answer's id and its position.
    Raises ``UpstreamError`` for an error object or a document without a choice."""
    if not isinstance(document, dict):
        raise UpstreamError("the provider's answer is not a JSON object")
    if document.get("error") is not None:
        raise UpstreamError("the provider answered with an error: %s" % _error_message(document["error"]))
    choices = document.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise UpstreamError("the provider's answer is not a chat completion: it has no choices[0].message")
    answer = Answer(id=_string(document.get("id")), model=_string(document.get("model")))
    parts = answer.parts
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(Thinking(reasoning))
    text = _answer_text(message.get("content"))
    if text:
        parts.append(Text(text))
    refusal = message.get("refusal")
    refused = isinstance(refusal, str) and bool(refusal)
    if refused:
        parts.append(Text(refusal))
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        legacy = message.get("function_call")
        calls = [{"function": legacy}] if isinstance(legacy, dict) else []
    for position, call in enumerate(calls):
        if isinstance(call, dict):
            parts.append(_answer_call(call, answer.id, position))
    answer.stop = _stop(choice.get("finish_reason"), any(isinstance(p, ToolCall) for p in parts), refused)
    answer.usage = _read_usage(document.get("usage")) or Usage()
    return answer


def write_response(answer: Answer, ctx: AnswerContext) -> dict:
    """``answer`` → a ``chat.completion`` object under ``ctx.requested_model``: text
    joined into ``content`` (null when there is none), thinking as
    ``reasoning_content`` (what vLLM and DeepSeek clients read), usage with its total."""
    text = "".join(part.text for part in answer.parts if isinstance(part, Text))
    reasoning = "".join(part.text for part in answer.parts if isinstance(part, Thinking))
    calls = [_write_call(part, part.id or ctx.new_id("call_")) for part in answer.parts if isinstance(part, ToolCall)]
    message = {"role": _ASSISTANT, "content": text or None}  # type: dict
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    message["refusal"] = None
    return {
        "id": answer.id or ctx.new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": ctx.created(),
        "model": ctx.requested_model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _STOP_FINISHES[answer.stop]}],
        "usage": _write_usage(answer.usage),
    }


def _answer_text(content) -> str:
    """A message's ``content``: a string, or (some servers) an array of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            item["text"] for item in content if isinstance(item, dict) and isinstance(item.get("text"), str)
        )
    return ""


def _answer_call(call: dict, answer_id: Optional[str], position: int) -> ToolCall:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = _made_call_id(answer_id, position)
    return ToolCall(call_id, _string(function.get("name")) or "", _arguments(function.get("arguments")))


def _made_call_id(answer_id: Optional[str], position: int) -> str:
    """An id for a tool call the provider sent without one: deterministic, and unique
    across a conversation as long as answer ids are."""
    if answer_id:
        return "call_%s_%d" % (answer_id, position)
    return "call_%d" % position


def _stop(reason, called: bool, refused: bool) -> Stop:
    """The Stop for ``finish_reason``; a plain stop after tool calls (some servers say
    "stop" there) is TOOL_USE, after a refusal REFUSAL."""
    stop = _FINISH_STOPS.get(reason, Stop.END_TURN) if isinstance(reason, str) else Stop.END_TURN
    if stop is Stop.END_TURN:
        if called:
            return Stop.TOOL_USE
        if refused:
            return Stop.REFUSAL
    return stop


def read_usage(value) -> Usage:
    """A ``usage`` object of an answer or a chunk → Usage (empty for anything that is not
    an object)."""
    return _read_usage(value) or Usage()


def _read_usage(value) -> Optional[Usage]:
    """A ``usage`` object → Usage; None when it is not an object. DeepSeek's
    ``prompt_cache_hit_tokens`` counts cached tokens where ``prompt_tokens_details`` is
    missing."""
    if not isinstance(value, dict):
        return None
    usage = Usage(_integer(value.get("prompt_tokens")), _integer(value.get("completion_tokens")))
    prompt = value.get("prompt_tokens_details")
    if isinstance(prompt, dict):
        usage.cache_read = _integer(prompt.get("cached_tokens"))
    if usage.cache_read is None:
        usage.cache_read = _integer(value.get("prompt_cache_hit_tokens"))
    completion = value.get("completion_tokens_details")
    if isinstance(completion, dict):
        usage.reasoning = _integer(completion.get("reasoning_tokens"))
    return usage


def _write_usage(usage: Usage) -> dict:
    """Usage → a ``usage`` object; the details only where the answer knows them."""
    prompt = usage.input_tokens or 0
    completion = usage.output_tokens or 0
    written = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if usage.cache_read is not None:
        written["prompt_tokens_details"] = {"cached_tokens": usage.cache_read}
    if usage.reasoning is not None:
        written["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning}
    return written


def _usage_known(usage: Usage) -> bool:
    return any(
        value is not None
        for value in (usage.input_tokens, usage.output_tokens, usage.cache_read, usage.cache_write, usage.reasoning)
    )


def _error_message(error) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return "no message"


def _provider_error(error) -> ProxyError:
    """A provider's in-stream error object → ProxyError: the status from an HTTP-like
    ``code`` (vLLM, OpenRouter) or the ``type``, the kind from the ``type``."""
    fields = error if isinstance(error, dict) else {}
    status, error_type = 502, None
    for key in ("type", "code"):
        value = fields.get(key)
        if isinstance(value, str) and value in _ERROR_KINDS:
            status, error_type = _ERROR_KINDS[value]
            break
    code = _integer(fields.get("code"))
    if code is not None and 400 <= code <= 599:
        status = code
    if error_type is None:
        error_type = _KIND_OF_STATUS.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return ProxyError(_error_message(error), status=status, error_type=error_type)


# -- streams: reading --------------------------------------------------------------------

# The delta fields the reader acts on, and of them the strings a shape may leave open:
# text, and reasoning under either of its names.
_DELTA_FIELDS = ("reasoning_content", "reasoning", "content", "refusal", "tool_calls", "function_call")
_OPEN_FIELDS = {"content": BlockKind.TEXT, "reasoning_content": BlockKind.THINKING, "reasoning": BlockKind.THINKING}


def _plain_delta(chunk: dict):
    """(delta, key, block kind) for a chunk whose whole effect on a started reader is the
    string ``delta[key]``, whatever that string is: no error, usage or finish_reason, and
    one delta field of ``_OPEN_FIELDS`` set to a string that is not empty, with every
    other field the reader acts on empty. None for any other chunk."""
    if chunk.get("error") is not None or chunk.get("object") == "error" or chunk.get("usage"):
        return None
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    delta = choice.get("delta")
    if choice.get("finish_reason") or not delta or not isinstance(delta, dict):
        return None
    if isinstance(delta.get("function_call"), dict):
        return None  # a legacy call, even an empty one, is read
    set_fields = [key for key in _DELTA_FIELDS if delta.get(key)]
    if len(set_fields) != 1:
        return None
    key = set_fields[0]
    kind = _OPEN_FIELDS.get(key)
    if kind is None or not isinstance(delta[key], str):
        return None
    return delta, key, kind


class _Call:
    """A tool call being streamed: pending (``index`` None), open, or closed (``done``)."""

    __slots__ = ("id", "name", "fragments", "position", "index", "done")

    def __init__(self, call_id: Optional[str], position: int):
        self.id = call_id
        self.name = ""
        self.fragments = []  # type: List[str]
        self.position = position
        self.index = None  # type: Optional[int]
        self.done = False


class StreamReader(ShapedEventReader):
    """A provider's ``chat.completion.chunk`` stream → the sink's events (see the module
    docstring). ``[DONE]`` ends the answer; EOF after a ``finish_reason`` does too."""

    def __init__(self, sink: AnswerSink):
        self._sink = sink
        self._started = False
        self._finished = False
        self._over = False  # ended, or failed: nothing more is read
        self._answer_id = None  # type: Optional[str]
        self._next_index = 0
        self._open_kind = None  # type: Optional[BlockKind]
        self._open_index = 0
        self._live = None  # type: Optional[_Call]  # the tool call whose block is open
        self._pending = []  # type: List[_Call]  # calls waiting for their block, in order
        self._by_index = {}  # type: Dict[int, _Call]
        self._by_id = {}  # type: Dict[str, _Call]
        self._last = None  # type: Optional[_Call]
        self._calls = 0
        self._refused = False
        self._shape = DeltaShape()  # plain delta chunks read without parsing

    def _scanning(self) -> bool:
        return not (self._over or self._finished)

    def _deltas(self, pieces) -> None:
        """A run of plain delta chunks of the shape's kind reaches the sink as one
        ``deltas`` call."""
        kind = self._shape.tag
        index = self._open_index if self._open_kind is kind else self._block(kind)
        self._sink.deltas(index, kind, pieces)

    def feed(self, event) -> None:
        """Read one SSE event; comments and events after the end are ignored. Raises
        ``UpstreamError`` for data that is not JSON."""
        data = event.data
        if not data or self._over:
            return
        text = self._shape.match(data)
        if text is not None:
            # A plain delta chunk (see _plain_delta) with another string: its one effect.
            if text and not self._finished:
                kind = self._shape.tag
                index = self._open_index if self._open_kind is kind else self._block(kind)
                if kind is BlockKind.TEXT:
                    self._sink.text(index, text)
                else:
                    self._sink.thinking(index, text)
            return
        if data == "[DONE]":
            self._done()
            return
        try:
            chunk = loads(data)
        except ValueError:
            if data.strip() == "[DONE]":
                self._done()
                return
            raise UpstreamError("the provider's stream sent an event that is not JSON")
        if not isinstance(chunk, dict):
            return
        if chunk.get("error") is not None:
            self._fail(_provider_error(chunk["error"]))
            return
        if chunk.get("object") == "error":  # older vLLM: the error object itself
            self._fail(_provider_error(chunk))
            return
        if not self._started:
            self._start(chunk)
        choices = chunk.get("choices")
        if choices and not self._finished and isinstance(choices, list) and isinstance(choices[0], dict):
            self._choice(choices[0])
        usage = chunk.get("usage")
        if usage:
            usage = _read_usage(usage)
            if usage is not None:
                self._sink.usage(usage)
        elif self._shape.learning:
            plain = _plain_delta(chunk)
            if plain is not None:
                delta, key, kind = plain
                # OpenAI pads each chunk with a random string the reader never reads.
                ignored = [(chunk, "obfuscation")] if "obfuscation" in chunk else []
                self._shape.learn(data, chunk, (delta, key), kind, ignored, event_frame(event))

    def close(self) -> None:
        """The provider's stream ended: the answer ends if its finish_reason came.
        Raises ``UpstreamError`` if it did not (and no error was reported)."""
        if self._over:
            return
        if not self._finished:
            raise UpstreamError("the provider's stream ended before its finish_reason")
        self._over = True
        self._sink.end()

    def _start(self, chunk: dict) -> None:
        self._started = True
        self._answer_id = _string(chunk.get("id")) or None
        self._sink.start(self._answer_id, _string(chunk.get("model")) or None)

    def _choice(self, choice: dict) -> None:
        delta = choice.get("delta")
        if delta and isinstance(delta, dict):
            self._delta(delta)
        reason = choice.get("finish_reason")
        if reason:
            if reason == _ERROR_FINISH:
                self._fail(UpstreamError("the provider ended its answer with an error"))
            else:
                self._finish(reason)

    def _delta(self, delta: dict) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            self._sink.thinking(self._block(BlockKind.THINKING), reasoning)
        content = delta.get("content")
        if content and isinstance(content, str):
            self._sink.text(self._block(BlockKind.TEXT), content)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._refused = True
            self._sink.text(self._block(BlockKind.TEXT), refusal)
        calls = delta.get("tool_calls")
        if calls and isinstance(calls, list):
            for item in calls:
                if isinstance(item, dict):
                    self._tool_delta(item)
        elif isinstance(delta.get("function_call"), dict):  # the legacy single call
            self._tool_delta({"index": 0, "function": delta["function_call"]})

    def _block(self, kind: BlockKind) -> int:
        """The index of the open text or thinking block of ``kind``, opening it (and
        closing the block before) when another kind is open."""
        if self._open_kind is kind:
            return self._open_index
        self._close_blocks()
        return self._open(kind)

    def _open(self, kind: BlockKind, call: Optional[_Call] = None) -> int:
        index = self._next_index
        self._next_index += 1
        if call is None:
            self._sink.block_start(index, kind)
        else:
            call.index = index
            self._sink.block_start(index, kind, call.id or _made_call_id(self._answer_id, call.position), call.name)
        self._open_kind = kind
        self._open_index = index
        return index

    def _close_open(self) -> None:
        if self._open_kind is not None:
            self._sink.block_stop(self._open_index)
            self._open_kind = None
            if self._live is not None:
                self._live.done = True
                self._live = None

    def _close_blocks(self) -> None:
        """Close the open block, then write every held-back tool call whole."""
        self._close_open()
        for call in self._pending:
            index = self._open(BlockKind.TOOL_CALL, call)
            if call.fragments:
                self._sink.arguments(index, "".join(call.fragments))
            self._close_open()
            call.done = True
        self._pending = []

    def _tool_delta(self, item: dict) -> None:
        function = item.get("function")
        if not isinstance(function, dict):
            if not item.get("id"):
                return  # says nothing about any call
            function = {}
        call = self._call_for(item)
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = dumps(arguments) if isinstance(arguments, (dict, list)) else None
        if call is self._live:
            if arguments:
                self._sink.arguments(call.index, arguments)
            return
        if call.done:
            return  # a late fragment of a call already closed: no event can carry it
        name = function.get("name")
        if not call.name and isinstance(name, str):
            call.name = name
        if arguments:
            call.fragments.append(arguments)
        self._promote()

    def _call_for(self, item: dict) -> _Call:
        """The call a tool-call delta belongs to: by its id when known, else by its
        ``index`` unless it brings a new id there (vLLM and SGLang have sent every
        call under index 0), else the latest call; a new call otherwise."""
        call_id = item.get("id")
        call_id = call_id if isinstance(call_id, str) and call_id else None
        if call_id is not None and call_id in self._by_id:
            return self._by_id[call_id]
        index = _integer(item.get("index"))
        if index is not None:
            call = self._by_index.get(index)
            if call is not None and (call_id is None or call.id is None):
                if call_id is not None:
                    self._by_id[call_id] = call
                    if call.index is None:
                        call.id = call_id
                return call
        elif call_id is None and self._last is not None:
            return self._last
        call = _Call(call_id, self._calls)
        self._calls += 1
        if index is not None:
            self._by_index[index] = call
        if call_id is not None:
            self._by_id[call_id] = call
        self._last = call
        self._pending.append(call)
        return call

    def _promote(self) -> None:
        """Open the first held-back call once nothing else streams and its name is
        known; the arguments it gathered meanwhile go out at once."""
        if self._live is not None or not self._pending or not self._pending[0].name:
            return
        call = self._pending.pop(0)
        self._close_open()
        index = self._open(BlockKind.TOOL_CALL, call)
        self._live = call
        if call.fragments:
            self._sink.arguments(index, "".join(call.fragments))
        call.fragments = []

    def _finish(self, reason: str) -> None:
        self._close_blocks()
        self._finished = True
        self._sink.finish(_stop(reason, self._calls > 0, self._refused))

    def _done(self) -> None:
        if not self._finished:
            self._finish("stop")
        self._over = True
        self._sink.end()

    def _fail(self, error: ProxyError) -> None:
        self._over = True
        self._sink.error(error)


# -- streams: writing --------------------------------------------------------------------

_DONE = "data: [DONE]\n\n"


class StreamWriter(AnswerSink):
    """The sink that writes a Chat client's stream of ``chat.completion.chunk`` events:
    a first chunk with the role, content / reasoning_content / tool_calls deltas, a chunk
    with the finish_reason, then (``ctx.include_usage``) a chunk with ``choices: []`` and
    the usage, and ``data: [DONE]``. Without include_usage the usage, when known, rides
    on the finish chunk (as llama.cpp sends it), which clients read as an optional field.
    With it every other chunk carries ``"usage":null``, as OpenAI's do."""

    def __init__(self, ctx: AnswerContext):
        self._ctx = ctx
        self._out = []  # type: List[str]
        self._opened = False
        self._over = False
        # Every usage event merged: what the client's closing events report, and what
        # usage accounting reads after the stream.
        self.counted = Usage()
        self._finish = _STOP_FINISHES[Stop.END_TURN]
        self._calls = {}  # type: Dict[int, str]  # block index → its arguments prefix
        # The chunk templates, made at the opening: everything up to the delta, after it.
        self._chunk_start = ""
        self._head = ""
        self._tail = ""
        self._content = ""
        self._reasoning = ""
        self._delta_end = ""

    def take(self) -> bytes:
        """The bytes written since the last ``take``."""
        out = "".join(self._out).encode("utf-8")
        self._out = []
        return out

    def start(self, id, model):
        if not self._opened:
            self._open(id)

    def block_start(self, index, kind, id=None, name=None):
        if self._over:
            return
        if not self._opened:
            self._open(None)
        if kind is not BlockKind.TOOL_CALL:
            return
        position = len(self._calls)
        self._calls[index] = '%s{"tool_calls":[{"index":%d,"function":{"arguments":' % (self._head, position)
        self._out.append(
            '%s{"tool_calls":[{"index":%d,"id":%s,"type":"function","function":{"name":%s,"arguments":""}}]}%s'
            % (self._head, position, json_string(id or self._ctx.new_id("call_")), json_string(name or ""), self._tail)
        )

    def text(self, index, text):
        if text and not self._over:
            if not self._opened:
                self._open(None)
            self._out.append(self._content + json_string(text) + self._delta_end)

    def thinking(self, index, text):
        if text and not self._over:
            if not self._opened:
                self._open(None)
            self._out.append(self._reasoning + json_string(text) + self._delta_end)

    def arguments(self, index, fragment):
        if fragment and not self._over:
            prefix = self._calls.get(index)
            if prefix is not None:
                self._out.append(prefix + json_string(fragment) + "}}]}" + self._tail)

    def usage(self, usage):
        self.counted.merge(usage)

    def finish(self, stop, stop_sequence=None):
        self._finish = _STOP_FINISHES[stop]

    def end(self):
        if self._over:
            return
        if not self._opened:
            self._open(None)
        self._over = True
        close = '%s{},"logprobs":null,"finish_reason":"%s"}]' % (self._head, self._finish)
        if self._ctx.include_usage:
            self._out.append(close + ',"usage":null}\n\n')
            self._out.append('%s[],"usage":%s}\n\n' % (self._chunk_start, dumps(_write_usage(self.counted))))
        elif _usage_known(self.counted):
            self._out.append('%s,"usage":%s}\n\n' % (close, dumps(_write_usage(self.counted))))
        else:
            self._out.append(close + "}\n\n")
        self._out.append(_DONE)

    def error(self, error):
        if self._over:
            return
        self._over = True
        self._out.append(error_event(PROTOCOL, error).decode("utf-8"))

    def _open(self, answer_id: Optional[str]) -> None:
        """Make the chunk templates and write the first chunk (the role)."""
        self._opened = True
        ctx = self._ctx
        self._chunk_start = 'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"choices":' % (
            json_string(answer_id or ctx.new_id("chatcmpl-")),
            ctx.created(),
            encode_json_value(ctx.requested_model),
        )
        self._head = self._chunk_start + '[{"index":0,"delta":'
        self._tail = ',"logprobs":null,"finish_reason":null}]%s}\n\n' % (',"usage":null' if ctx.include_usage else "")
        self._content = self._head + '{"content":'
        self._reasoning = self._head + '{"reasoning_content":'
        self._delta_end = "}" + self._tail
        self._out.append(self._head + '{"role":"assistant","content":""}' + self._tail)
