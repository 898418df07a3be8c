"""Anthropic Messages ↔ the neutral model: requests, whole answers and answer streams.

Strategy: four readers and writers over plain dicts and SSE events, driven by the tables
at the top of the module (roles, stop reasons, block kinds, error types). Reading is
strict where a wrong value would change the request (BadRequest naming the field, in the
API's own dotted terms) and lenient where a field is optional (ignored, or named in the
one ``log_dropped`` line). Writing follows what the API accepts rather than what the
neutral model can hold:

- requests: ``max_tokens`` is required (``DEFAULT_MAX_TOKENS`` when the conversation has
  none); system messages inside the conversation have no place in ``messages``, so their
  text is appended to the top-level ``system`` (their position is lost); consecutive
  messages of one role are merged, tool results first, because the API wants the roles to
  alternate and a ``tool_result`` to open the message after its ``tool_use``; thinking
  without a signature and empty text blocks are left out (both are rejected). Thinking
  settings are written by ``thinking.apply_suffix`` and then fitted to the API's rules
  (``_fit_thinking``).
- answers, for an Anthropic client (SPEC §3.2): ``tool_use`` and ``thinking`` blocks
  always carry ``signature`` (``""`` when unknown); tool names get the casing the client
  declared (``ctx.tool_names``); a whole answer drops its thinking blocks when it calls a
  tool (a stream has sent them already and keeps them).
- usage: Anthropic's ``input_tokens`` counts only the uncached prompt, the neutral
  model's the whole prompt: the two cache counts are added when reading and taken off
  when writing. The API reports both cache counts on every answer, 0 meaning no cache was
  involved; the neutral model says that with None, so 0 reads as None and None writes as 0.

Streams are the hot path. The reader parses each event's JSON once and takes its kind
from the JSON ``type`` (some compatible servers send ``data:`` lines without ``event:``);
a ``content_block_delta`` is learnt as a shape (``codecs.shapes``), and later deltas of
that shape are read without parsing them. Anthropic never interleaves blocks, so indexes
only need renumbering around blocks the neutral model has no kind for
(``redacted_thinking``, server tool blocks), which are skipped. The writer holds
``message_start`` back until the first block or the end, so that usage known early (the
input tokens) goes in it as the API's own stream has it, and writes each delta from a
byte prefix made when its block starts plus the delta's JSON string.
"""

from typing import Dict, List, NamedTuple, Optional, Tuple

from cliproxy.config.model import Protocol
from cliproxy.errors import BadRequest, ProxyError, UpstreamError
from cliproxy.http.sse import event_frame
from cliproxy.jsontext import loads
from cliproxy.routing.suffix import LEVELS, ThinkingKind, ThinkingSuffix
from cliproxy.translate.codecs.common import ShapedEventReader, dumps, json_string, log_dropped, parse_data_url, safe_call_id
from cliproxy.translate.codecs.shapes import DeltaShape
from cliproxy.translate.errors import error_event
from cliproxy.translate.ir import (
    Answer,
    AnswerContext,
    AnswerSink,
    BlockKind,
    Conversation,
    Media,
    Message,
    Part,
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
)
from cliproxy.translate.thinking import apply_suffix

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "PROTOCOL",
    "StreamReader",
    "StreamWriter",
    "read_request",
    "read_response",
    "read_usage",
    "write_request",
    "write_response",
]

PROTOCOL = Protocol.CLAUDE

# ``max_tokens`` is required by the Messages API; this is written when the client of
# another protocol set no limit (a common default of Anthropic's own SDK examples).
DEFAULT_MAX_TOKENS = 8192

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM}

# stop_reason → Stop. ``model_context_window_exceeded`` (newer models) is a length limit.
_STOPS = {
    "end_turn": Stop.END_TURN,
    "max_tokens": Stop.MAX_TOKENS,
    "model_context_window_exceeded": Stop.MAX_TOKENS,
    "stop_sequence": Stop.STOP_SEQUENCE,
    "tool_use": Stop.TOOL_USE,
    "pause_turn": Stop.PAUSE,
    "refusal": Stop.REFUSAL,
}
_STOP_REASONS = {
    Stop.END_TURN: "end_turn",
    Stop.MAX_TOKENS: "max_tokens",
    Stop.STOP_SEQUENCE: "stop_sequence",
    Stop.TOOL_USE: "tool_use",
    Stop.PAUSE: "pause_turn",
    Stop.REFUSAL: "refusal",
}

_TOOL_CHOICES = {
    "auto": ToolChoiceMode.AUTO,
    "any": ToolChoiceMode.ANY,
    "none": ToolChoiceMode.NONE,
    "tool": ToolChoiceMode.TOOL,
}
_TOOL_CHOICE_TYPES = {mode: name for name, mode in _TOOL_CHOICES.items()}

# Answer content blocks the neutral model has a kind for; others (redacted_thinking,
# server_tool_use, web_search_tool_result, ...) are skipped.
_BLOCK_KINDS = {"text": BlockKind.TEXT, "thinking": BlockKind.THINKING, "tool_use": BlockKind.TOOL_CALL}

# Anthropic error type → (HTTP status, our error kind), after
# https://docs.anthropic.com/en/api/errors. Unknown types are taken as server errors.
_ERRORS = {
    "invalid_request_error": (400, "invalid_request_error"),
    "authentication_error": (401, "authentication_error"),
    "billing_error": (402, "payment_required"),
    "permission_error": (403, "permission_error"),
    "not_found_error": (404, "not_found_error"),
    "request_too_large": (413, "request_too_large"),
    "rate_limit_error": (429, "rate_limit_error"),
    "api_error": (500, "api_error"),
    "timeout_error": (504, "timeout_error"),
    "overloaded_error": (529, "overloaded_error"),
}

# Request fields read here; any other top-level field is dropped and logged.
# (``model`` is the translator's: it picks the upstream model.)
_REQUEST_FIELDS = frozenset(
    (
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
    )
)

# The thinking settings that make Anthropic reject sampling changes: temperature must be 1,
# top_p at least this, top_k absent (extended-thinking documentation).
_THINKING_MIN_TOP_P = 0.95

_USAGE_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")

# -- reading requests --------------------------------------------------------------------


def read_request(body: dict, model: Optional[str] = None, stream: Optional[bool] = None) -> Conversation:
    """A Messages request body → ``Conversation`` (``model`` is not used: the body names
    it; ``stream``, when given, wins over the body's). Raises ``BadRequest`` for a body
    that is not an object, messages, blocks, tools or settings of the wrong shape, and
    sources that cannot leave Anthropic (Files API ids)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    dropped = [name for name in body if name not in _REQUEST_FIELDS]
    conversation = Conversation(
        system=_read_system(body.get("system"), dropped),
        messages=_read_messages(body.get("messages"), dropped),
        tools=_read_tools(body.get("tools"), dropped),
        max_output_tokens=_integer(body, "max_tokens"),
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        top_k=_integer(body, "top_k"),
        stop=_strings(body, "stop_sequences"),
        thinking=_read_thinking(body.get("thinking"), body.get("output_config"), dropped),
        stream=(body.get("stream") is True) if stream is None else stream,
        user=_read_user(body.get("metadata"), dropped),
    )
    conversation.tool_choice, conversation.parallel_tool_calls = _read_tool_choice(body.get("tool_choice"))
    log_dropped(PROTOCOL, True, dropped)
    return name_results(conversation)


def _read_system(system, dropped: List[str]) -> List[Text]:
    if system is None:
        return []
    if isinstance(system, str):
        return [Text(system)] if system else []
    if not isinstance(system, list):
        raise BadRequest("system: must be a string or an array of text blocks")
    texts = []
    for i, block in enumerate(system):
        where = "system.%d" % i
        if not isinstance(block, dict) or block.get("type") != "text":
            raise BadRequest("%s: must be a text block" % where)
        _note_cache_control(block, dropped)
        texts.append(Text(_string(block, "text", where)))
    return texts


def _read_messages(messages, dropped: List[str]) -> List[Message]:
    if not isinstance(messages, list):
        raise BadRequest("messages: must be an array of messages")
    return [_read_message(message, "messages.%d" % i, dropped) for i, message in enumerate(messages)]


def _read_message(message, where: str, dropped: List[str]) -> Message:
    if not isinstance(message, dict):
        raise BadRequest("%s: must be an object" % where)
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise BadRequest("%s.role: must be \"user\" or \"assistant\"" % where)
    content = message.get("content")
    if isinstance(content, str):
        parts = [Text(content)] if content else []  # type: List[Part]
    elif isinstance(content, list):
        parts = []
        for j, block in enumerate(content):
            part = _read_block(block, "%s.content.%d" % (where, j), dropped)
            if part is not None:
                parts.append(part)
    else:
        raise BadRequest("%s.content: must be a string or an array of content blocks" % where)
    return Message(_ROLES[role], parts)


def _read_block(block, where: str, dropped: List[str]) -> Optional[Part]:
    """One content block of a message → its part; None (and named in ``dropped``) for
    block types the neutral model has no counterpart for."""
    if not isinstance(block, dict):
        raise BadRequest("%s: must be a content block object" % where)
    kind = block.get("type")
    reader = _BLOCK_READERS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        dropped.append("content.%s" % kind if isinstance(kind, str) else "content.type")
        return None
    _note_cache_control(block, dropped)
    return reader(block, where, dropped)


def _read_text(block: dict, where: str, dropped: List[str]) -> Part:
    return Text(_string(block, "text", where))


def _read_image(block: dict, where: str, dropped: List[str]) -> Part:
    return _read_source(block, where, None)


def _read_document(block: dict, where: str, dropped: List[str]) -> Part:
    """A document: PDF or plain text, inline or by URL (a URL document is a PDF)."""
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text":
        return Text(_string(source, "data", where + ".source"))
    media = _read_source(block, where, "application/pdf")
    title = block.get("title")
    if isinstance(title, str):
        media.filename = title
    return media


def _read_source(block: dict, where: str, url_type: Optional[str]) -> Media:
    source = block.get("source")
    where += ".source"
    if not isinstance(source, dict):
        raise BadRequest("%s: must be an object" % where)
    kind = source.get("type")
    if kind == "base64":
        return Media(_string(source, "media_type", where), data=_string(source, "data", where))
    if kind == "url":
        return Media(url_type, url=_string(source, "url", where))
    raise BadRequest("%s.type: only base64 and url sources can be sent to another provider" % where)


def _read_tool_use(block: dict, where: str, dropped: List[str]) -> Part:
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise BadRequest("%s.input: must be an object" % where)
    return ToolCall(_string(block, "id", where), _string(block, "name", where), arguments)


def _read_tool_result(block: dict, where: str, dropped: List[str]) -> Part:
    content = block.get("content")
    if content is None:
        parts = []  # type: List[Part]
    elif isinstance(content, str):
        parts = [Text(content)] if content else []
    elif isinstance(content, list):
        parts = []
        for j, inner in enumerate(content):
            part = _read_block(inner, "%s.content.%d" % (where, j), dropped)
            if isinstance(part, (Text, Media)):
                parts.append(part)
            elif part is not None:
                dropped.append("tool_result.content.%s" % inner.get("type"))
    else:
        raise BadRequest("%s.content: must be a string or an array of content blocks" % where)
    return ToolResult(_string(block, "tool_use_id", where), parts, block.get("is_error") is True)


def _read_thinking_block(block: dict, where: str, dropped: List[str]) -> Part:
    return _thinking_part(block)


def _thinking_part(block: dict) -> Thinking:
    """A thinking block of a request or an answer; an empty signature is no signature."""
    text = block.get("thinking")
    signature = block.get("signature")
    return Thinking(
        text if isinstance(text, str) else "",
        signature if isinstance(signature, str) and signature else None,
    )


def _read_redacted_thinking(block: dict, where: str, dropped: List[str]) -> Part:
    return Thinking(redacted=_string(block, "data", where))


_BLOCK_READERS = {
    "text": _read_text,
    "image": _read_image,
    "document": _read_document,
    "tool_use": _read_tool_use,
    "tool_result": _read_tool_result,
    "thinking": _read_thinking_block,
    "redacted_thinking": _read_redacted_thinking,
}


def _read_tools(tools, dropped: List[str]) -> List[Tool]:
    """Client tools; server tools (with a ``type`` such as ``web_search_20250305``) run
    inside Anthropic and have no counterpart elsewhere."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("tools: must be an array of tools")
    read = []
    for i, tool in enumerate(tools):
        where = "tools.%d" % i
        if not isinstance(tool, dict):
            raise BadRequest("%s: must be an object" % where)
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            dropped.append("tools.%s" % kind if isinstance(kind, str) else "tools.type")
            continue
        _note_cache_control(tool, dropped)
        description = tool.get("description")
        read.append(Tool(_string(tool, "name", where), description if isinstance(description, str) else None))
        schema = tool.get("input_schema")
        if isinstance(schema, dict):
            read[-1].schema = schema
    return read


def _read_tool_choice(choice) -> Tuple[Optional[ToolChoice], Optional[bool]]:
    """``tool_choice`` → (choice, parallel_tool_calls): ``disable_parallel_tool_use``
    true means parallel calls off, false means on."""
    if choice is None:
        return None, None
    if not isinstance(choice, dict):
        raise BadRequest("tool_choice: must be an object")
    kind = choice.get("type")
    mode = _TOOL_CHOICES.get(kind) if isinstance(kind, str) else None
    if mode is None:
        raise BadRequest("tool_choice.type: must be one of auto, any, none, tool")
    name = _string(choice, "name", "tool_choice") if mode is ToolChoiceMode.TOOL else None
    disable = choice.get("disable_parallel_tool_use")
    parallel = (not disable) if isinstance(disable, bool) else None
    return ToolChoice(mode, name), parallel


def _read_thinking(thinking, output_config, dropped: List[str]) -> Optional[ThinkingSuffix]:
    """``thinking`` and ``output_config.effort`` → the suffix-table setting. An effort
    level wins over adaptive thinking (which leaves the amount to the model) but not over
    an explicit budget or thinking turned off."""
    setting = None
    if thinking is not None:
        if not isinstance(thinking, dict):
            raise BadRequest("thinking: must be an object")
        kind = thinking.get("type")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not _is_int(budget) or budget < 0:
                raise BadRequest("thinking.budget_tokens: must be a non-negative integer")
            setting = ThinkingSuffix(ThinkingKind.BUDGET, budget=budget)
        elif kind == "disabled":
            setting = ThinkingSuffix(ThinkingKind.NONE)
        elif kind == "adaptive":
            setting = ThinkingSuffix(ThinkingKind.AUTO)
        else:
            raise BadRequest("thinking.type: must be enabled, disabled or adaptive")
    effort = _read_effort(output_config, dropped)
    if effort is not None and (setting is None or setting.kind is ThinkingKind.AUTO):
        setting = ThinkingSuffix(ThinkingKind.LEVEL, level=effort)
    return setting


def _read_effort(output_config, dropped: List[str]) -> Optional[str]:
    if not isinstance(output_config, dict):
        return None
    effort = None
    for key, value in output_config.items():
        if key == "effort" and isinstance(value, str) and value.lower() in LEVELS:
            effort = value.lower()
        else:
            dropped.append("output_config.%s" % key)
    return effort


def _read_user(metadata, dropped: List[str]) -> Optional[str]:
    if not isinstance(metadata, dict):
        return None
    for key in metadata:
        if key != "user_id":
            dropped.append("metadata.%s" % key)
    user = metadata.get("user_id")
    return user if isinstance(user, str) else None


def _note_cache_control(holder: dict, dropped: List[str]) -> None:
    if "cache_control" in holder:
        dropped.append("cache_control")


def _string(holder: dict, key: str, where: str) -> str:
    value = holder.get(key)
    if not isinstance(value, str):
        raise BadRequest("%s.%s: must be a string" % (where, key))
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(body: dict, key: str) -> Optional[int]:
    value = body.get(key)
    if value is not None and not _is_int(value):
        raise BadRequest("%s: must be an integer" % key)
    return value


def _number(body: dict, key: str) -> Optional[float]:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BadRequest("%s: must be a number" % key)
    return value


def _strings(body: dict, key: str) -> List[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest("%s: must be an array of strings" % key)
    return list(value)


# -- writing requests --------------------------------------------------------------------


def write_request(conversation: Conversation, model: str) -> dict:
    """``conversation`` → a Messages request body for upstream ``model`` (see the module
    docstring for what is merged, moved or left out). Thinking is written by
    ``apply_suffix`` and then fitted by ``_fit_thinking``."""
    dropped = []  # type: List[str]
    system = [_text_block(text.text) for text in conversation.system if text.text]
    messages = _write_messages(conversation.messages, system, dropped)
    max_tokens = conversation.max_output_tokens
    body = {"model": model, "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens}
    if system:
        body["system"] = system
    body["messages"] = messages
    if conversation.tools:
        body["tools"] = [_write_tool(tool) for tool in conversation.tools]
        choice = _write_tool_choice(conversation.tool_choice, conversation.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    for key, value in (
        ("temperature", conversation.temperature),
        ("top_p", conversation.top_p),
        ("top_k", conversation.top_k),
    ):
        if value is not None:
            body[key] = value
    if conversation.stop:
        body["stop_sequences"] = list(conversation.stop)
    if conversation.stream:
        body["stream"] = True
    if conversation.user is not None:
        body["metadata"] = {"user_id": conversation.user}
    apply_suffix(PROTOCOL, body, conversation.thinking, model)
    _fit_thinking(body, dropped)
    log_dropped(PROTOCOL, False, dropped)
    return body


def _write_messages(messages: List[Message], system: List[dict], dropped: List[str]) -> List[dict]:
    """The ``messages`` array: system messages go to ``system`` (appended, in order),
    empty messages are skipped, consecutive messages of one role merged, and tool results
    put first in their user message."""
    turns = []  # type: List[dict]
    for message in messages:
        if message.role is Role.SYSTEM:
            system.extend(_text_block(part.text) for part in message.parts if isinstance(part, Text) and part.text)
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = [block for block in (_write_part(part, role, dropped) for part in message.parts) if block]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return turns


def _write_part(part: Part, role: str, dropped: List[str]) -> Optional[dict]:
    """One part → its content block, or None when the API would reject it (empty text,
    unsigned thinking, thinking outside an assistant message, unknown media)."""
    if isinstance(part, Text):
        return _text_block(part.text) if part.text else None
    if isinstance(part, Media):
        return _media_block(part, dropped)
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": safe_call_id(part.id, "toolu_"), "name": part.name, "input": part.arguments}
    if isinstance(part, ToolResult):
        return _tool_result_block(part, dropped)
    if isinstance(part, Thinking) and role == "assistant":
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.redacted}
        if part.signature:
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def _text_block(text: str) -> dict:
    return {"type": "text", "text": text}


def _media_block(media: Media, dropped: List[str]) -> Optional[dict]:
    """An image (any ``image/*``, or a URL of unknown type) or a PDF document; a
    ``data:`` URL is sent as the inline data it holds."""
    media_type, data = media.media_type, media.data
    if data is None and media.url is not None:
        inline = parse_data_url(media.url)
        if inline is not None:
            media_type, data = inline
    if data is not None:
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif media.url is not None:
        source = {"type": "url", "url": media.url}
    else:
        return None
    if media_type is None or media_type.startswith("image/"):
        return {"type": "image", "source": source}
    if media_type == "application/pdf":
        block = {"type": "document", "source": source}
        if media.filename:
            block["title"] = media.filename
        return block
    dropped.append("media.%s" % media_type)
    return None


def _tool_result_block(result: ToolResult, dropped: List[str]) -> dict:
    block = {"type": "tool_result", "tool_use_id": safe_call_id(result.call_id, "toolu_")}
    content = []
    for part in result.content:
        if isinstance(part, Text):
            if part.text:
                content.append(_text_block(part.text))
        else:
            media = _media_block(part, dropped)
            if media is not None:
                content.append(media)
    if content:
        block["content"] = content
    if result.is_error:
        block["is_error"] = True
    return block


def _write_tool(tool: Tool) -> dict:
    written = {"name": tool.name}
    if tool.description is not None:
        written["description"] = tool.description
    written["input_schema"] = tool.schema
    return written


def _write_tool_choice(choice: Optional[ToolChoice], parallel: Optional[bool]) -> Optional[dict]:
    """``tool_choice``; parallel calls turned off need one (``auto`` when the client
    chose none)."""
    if choice is None and parallel is not False:
        return None
    mode = ToolChoiceMode.AUTO if choice is None else choice.mode
    written = {"type": _TOOL_CHOICE_TYPES[mode]}
    if mode is ToolChoiceMode.TOOL:
        written["name"] = choice.name or ""
    if parallel is False and mode is not ToolChoiceMode.NONE:
        written["disable_parallel_tool_use"] = True
    return written


def _fit_thinking(body: dict, dropped: List[str]) -> None:
    """Make enabled thinking acceptable to the API, in place:

    - thinking is turned off (``{"type": "disabled"}``) when ``tool_choice`` forces a
      tool (the API refuses both), and when the request continues a tool loop whose last
      assistant message does not open with a signed thinking block (the API: "a final
      assistant message must start with a thinking block"), as in any tool loop of a
      client whose thinking carries no signature: unsigned thinking is never written;
    - otherwise the sampling settings thinking forbids are left out: ``temperature``
      other than 1, ``top_p`` below 0.95, and ``top_k``.

    What is turned off or left out is named in ``dropped``.
    """
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return
    choice = body.get("tool_choice")
    forced = choice is not None and choice["type"] in ("any", "tool")
    if forced or _unsigned_tool_turn(body["messages"]):
        body["thinking"] = {"type": "disabled"}
        dropped.append("thinking")
        return
    forbidden = (
        ("temperature", body.get("temperature", 1) != 1),
        ("top_p", body.get("top_p", 1) < _THINKING_MIN_TOP_P),
        ("top_k", "top_k" in body),
    )
    for key, rejected in forbidden:
        if rejected:
            del body[key]
            dropped.append(key)


def _unsigned_tool_turn(messages: List[dict]) -> bool:
    """True when the last message hands back tool results to an assistant message that
    called a tool without opening with a thinking block."""
    if len(messages) < 2 or messages[-1]["role"] != "user" or messages[-2]["role"] != "assistant":
        return False
    if not any(block["type"] == "tool_result" for block in messages[-1]["content"]):
        return False
    assistant = messages[-2]["content"]
    calls_tool = any(block["type"] == "tool_use" for block in assistant)
    return calls_tool and assistant[0]["type"] not in ("thinking", "redacted_thinking")


# -- whole answers -----------------------------------------------------------------------


def read_response(document: dict) -> Answer:
    """A Messages answer → ``Answer``: text, thinking and tool_use blocks in order (other
    blocks skipped). Raises ``UpstreamError`` for an error body or a document without a
    ``content`` array."""
    if not isinstance(document, dict):
        raise UpstreamError("the Anthropic answer is not a JSON object")
    if document.get("type") == "error":
        raise UpstreamError("Anthropic answered with an error: %s" % _provider_error(document.get("error")).message)
    content = document.get("content")
    if not isinstance(content, list):
        raise UpstreamError("the Anthropic answer has no content array")
    parts = [part for part in map(_answer_part, content) if part is not None]
    stop_sequence = document.get("stop_sequence")
    return Answer(
        id=_optional_string(document.get("id")),
        model=_optional_string(document.get("model")),
        parts=parts,
        stop=_read_stop(document.get("stop_reason")),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        usage=_usage_from(_counts(document.get("usage"), {})),
    )


def _answer_part(block) -> Optional[Part]:
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text":
        return Text(_optional_string(block.get("text")) or "")
    if kind == "thinking":
        return _thinking_part(block)
    if kind == "tool_use":
        arguments = block.get("input")
        return ToolCall(
            _optional_string(block.get("id")) or "",
            _optional_string(block.get("name")) or "",
            arguments if isinstance(arguments, dict) else {},
        )
    return None


def write_response(answer: Answer, ctx: AnswerContext) -> dict:
    """``answer`` → a Messages answer for an Anthropic client (signatures, tool-name
    casing and the thinking drop of SPEC §3.2; see the module docstring)."""
    message_id = answer.id or ctx.new_id("msg_")
    calls_tool = any(isinstance(part, ToolCall) for part in answer.parts)
    content = []
    for part in answer.parts:
        if isinstance(part, Text):
            content.append(_text_block(part.text))
        elif isinstance(part, Thinking):
            if not calls_tool:
                content.append(_thinking_answer_block(part))
        elif isinstance(part, ToolCall):
            content.append(
                {
                    "type": "tool_use",
                    "id": part.id or ctx.new_id("toolu_"),
                    "name": _cased(part.name, ctx),
                    "input": part.arguments,
                    "signature": "",
                }
            )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.requested_model,
        "content": content,
        "stop_reason": _STOP_REASONS[answer.stop],
        "stop_sequence": answer.stop_sequence,
        "usage": _write_usage(answer.usage),
    }


def _thinking_answer_block(part: Thinking) -> dict:
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.redacted}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}


def _cased(name: str, ctx: AnswerContext) -> str:
    return ctx.tool_names.get(name.lower(), name)


def _read_stop(reason) -> Stop:
    return _STOPS.get(reason, Stop.END_TURN) if isinstance(reason, str) else Stop.END_TURN


def _optional_string(value) -> Optional[str]:
    return value if isinstance(value, str) else None


# -- usage -------------------------------------------------------------------------------


def _counts(raw, counts: Dict[str, int]) -> Dict[str, int]:
    """``counts`` updated, in place, with the integer token counts of the usage object
    ``raw`` (stream usage is cumulative: a later count replaces an earlier one)."""
    if isinstance(raw, dict):
        for key in _USAGE_KEYS:
            value = raw.get(key)
            if _is_int(value):
                counts[key] = value
    return counts


def read_usage(raw) -> Usage:
    """A ``usage`` object of an answer, ``message_start`` or ``message_delta`` → Usage
    (empty for anything that is not an object)."""
    return _usage_from(_counts(raw, {}))


def _usage_from(counts: Dict[str, int]) -> Usage:
    """Anthropic counts → ``Usage``: the prompt is the uncached input plus both cache
    counts; a cache count of 0 is None (no cache involved)."""
    cache_read = counts.get("cache_read_input_tokens") or None
    cache_write = counts.get("cache_creation_input_tokens") or None
    prompt = counts.get("input_tokens")
    if prompt is not None:
        prompt += (cache_read or 0) + (cache_write or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=counts.get("output_tokens"),
        cache_read=cache_read,
        cache_write=cache_write,
    )


def _write_usage(usage: Usage) -> dict:
    """``Usage`` → Anthropic's usage object (unknown counts as 0, as the API reports)."""
    cache_read = usage.cache_read or 0
    cache_write = usage.cache_write or 0
    return {
        "input_tokens": max(0, (usage.input_tokens or 0) - cache_read - cache_write),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": usage.output_tokens or 0,
    }


def _provider_error(error) -> ProxyError:
    """An Anthropic error object ``{type, message}`` → ``ProxyError`` with the type's
    HTTP status and our name for it."""
    error = error if isinstance(error, dict) else {}
    name = _optional_string(error.get("type")) or "api_error"
    message = _optional_string(error.get("message")) or "Anthropic reported %s" % name
    status, error_type = _ERRORS.get(name, (500, "api_error"))
    return ProxyError(message, status=status, error_type=error_type)


# -- streams -----------------------------------------------------------------------------


class _Delta(NamedTuple):
    """What a ``content_block_delta`` of one type carries: the delta's string ``field``,
    the ``kind`` of block it belongs to and the sink ``method`` it goes to."""

    field: str
    kind: BlockKind
    method: str


_DELTAS = {
    "text_delta": _Delta("text", BlockKind.TEXT, "text"),
    "thinking_delta": _Delta("thinking", BlockKind.THINKING, "thinking"),
    "signature_delta": _Delta("signature", BlockKind.THINKING, "signature"),
    "input_json_delta": _Delta("partial_json", BlockKind.TOOL_CALL, "arguments"),
}


def _plain_delta(obj: dict):
    """(delta, field, (index, _Delta)) for a ``content_block_delta`` event whose whole
    effect is ``StreamReader._delta`` of the string ``delta[field]``, whatever that string
    is; None for any other event."""
    if obj.get("type") != "content_block_delta":
        return None
    index, delta = obj.get("index"), obj.get("delta")
    if not _is_int(index) or not isinstance(delta, dict):
        return None
    delta_type = delta.get("type")
    known = _DELTAS.get(delta_type) if isinstance(delta_type, str) else None
    if known is None or not isinstance(delta.get(known.field), str):
        return None
    return delta, known.field, (index, known)


class StreamReader(ShapedEventReader):
    """Reads an Anthropic Messages SSE stream into an ``AnswerSink`` (see ``ir``).

    Blocks without a neutral kind are skipped and later indexes renumbered; a delta of
    the wrong kind for its block is ignored. ``message_stop`` ends the answer; an
    ``error`` event fails it. ``close()`` raises ``UpstreamError`` for a stream that
    ended before either; an event whose JSON does not parse raises ``UpstreamError``.
    """

    def __init__(self, sink: AnswerSink):
        self._sink = sink
        self._blocks = {}  # type: Dict[int, Tuple[int, BlockKind]]  # upstream index → ours, kind
        self._next_index = 0
        self._counts = {}  # type: Dict[str, int]
        self._finished = False
        self._done = False  # message_stop or error seen: later events are ignored
        self._shape = DeltaShape()  # delta events read without parsing

    def _scanning(self) -> bool:
        return not self._done

    def _deltas(self, pieces) -> None:
        """The strings of a run of delta events of the shape's kind, non-empty, as
        ``_delta`` would take them one by one."""
        index, known = self._shape.tag
        entry = self._blocks.get(index)
        if entry is None or entry[1] is not known.kind:
            return
        if known.method == "signature":
            for piece in pieces:
                self._sink.signature(entry[0], piece)
        else:
            self._sink.deltas(entry[0], known.kind, pieces)

    def feed(self, event) -> None:
        """Handle one SSE event (a ``cliproxy.http.sse.Event``)."""
        data = event.data
        if self._done or data is None or event.event == "ping":
            return
        value = self._shape.match(data)
        if value is not None:
            # A content_block_delta event seen before, with another string (see _delta).
            index, known = self._shape.tag
            self._delta(index, known, value)
            return
        try:
            obj = loads(data)
        except ValueError:
            raise UpstreamError("the Anthropic stream sent an event that is not JSON")
        if not isinstance(obj, dict):
            return
        kind = obj.get("type", event.event)
        handler = self._HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, obj)
        if self._shape.learning:
            plain = _plain_delta(obj)
            if plain is not None:
                delta, field, tag = plain
                self._shape.learn(data, obj, (delta, field), tag, frame=event_frame(event))

    def close(self) -> None:
        """The stream ended; raises ``UpstreamError`` when it ended incomplete."""
        if not self._done:
            raise UpstreamError("the Anthropic stream ended before message_stop")

    def _message_start(self, obj: dict) -> None:
        message = obj.get("message")
        if not isinstance(message, dict):
            message = {}
        self._sink.start(_optional_string(message.get("id")), _optional_string(message.get("model")))
        self._usage(message.get("usage"))

    def _block_start(self, obj: dict) -> None:
        index, block = obj.get("index"), obj.get("content_block")
        if not _is_int(index) or not isinstance(block, dict):
            return
        kind = block.get("type")
        kind = _BLOCK_KINDS.get(kind) if isinstance(kind, str) else None
        if kind is None:
            return
        self._stop_blocks()  # a compatible server that never stopped the previous block
        ours = self._next_index
        self._next_index += 1
        self._blocks[index] = (ours, kind)
        sink = self._sink
        if kind is BlockKind.TOOL_CALL:
            sink.block_start(ours, kind, _optional_string(block.get("id")), _optional_string(block.get("name")))
            arguments = block.get("input")
            if isinstance(arguments, dict) and arguments:
                sink.arguments(ours, dumps(arguments))
            return
        sink.block_start(ours, kind)
        text = block.get(kind.value)
        if isinstance(text, str) and text:
            (sink.text if kind is BlockKind.TEXT else sink.thinking)(ours, text)
        signature = block.get("signature")
        if kind is BlockKind.THINKING and isinstance(signature, str) and signature:
            sink.signature(ours, signature)

    def _block_delta(self, obj: dict) -> None:
        index, delta = obj.get("index"), obj.get("delta")
        if not isinstance(delta, dict):
            return
        delta_type = delta.get("type")
        known = _DELTAS.get(delta_type) if isinstance(delta_type, str) else None
        if known is not None:
            self._delta(index, known, delta.get(known.field))

    def _delta(self, index, known: _Delta, value) -> None:
        """A delta of the kind ``known`` for block ``index`` goes to the sink when that
        block is open and of that kind and ``value`` is a string with content."""
        entry = self._blocks.get(index) if _is_int(index) else None
        if entry is not None and entry[1] is known.kind and isinstance(value, str) and value:
            getattr(self._sink, known.method)(entry[0], value)

    def _block_stop(self, obj: dict) -> None:
        index = obj.get("index")
        entry = self._blocks.pop(index, None) if _is_int(index) else None
        if entry is not None:
            self._sink.block_stop(entry[0])

    def _message_delta(self, obj: dict) -> None:
        self._usage(obj.get("usage"))
        delta = obj.get("delta")
        if not self._finished and isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
            sequence = delta.get("stop_sequence")
            self._finish(_read_stop(delta["stop_reason"]), sequence if isinstance(sequence, str) else None)

    def _message_stop(self, obj: dict) -> None:
        if not self._finished:
            self._finish(Stop.END_TURN, None)
        self._done = True
        self._sink.end()

    def _error(self, obj: dict) -> None:
        self._done = True
        self._sink.error(_provider_error(obj.get("error")))

    def _usage(self, raw) -> None:
        if isinstance(raw, dict):
            self._sink.usage(_usage_from(_counts(raw, self._counts)))

    def _finish(self, stop: Stop, sequence: Optional[str]) -> None:
        self._stop_blocks()
        self._finished = True
        self._sink.finish(stop, sequence)

    def _stop_blocks(self) -> None:
        for ours, _ in sorted(self._blocks.values(), key=lambda entry: entry[0]):
            self._sink.block_stop(ours)
        self._blocks.clear()

    _HANDLERS = {
        "message_start": _message_start,
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "content_block_stop": _block_stop,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
        "error": _error,
    }


# Byte templates of the writer's per-delta events: a prefix made once per block (it holds
# the index and the delta type) + the delta's JSON string + this end.
_DELTA_PREFIX = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":'
_DELTA_END_TEXT = "}}\n\n"
_DELTA_END = _DELTA_END_TEXT.encode("ascii")
_DELTA_FIELDS = {
    BlockKind.TEXT: ("text_delta", "text"),
    BlockKind.THINKING: ("thinking_delta", "thinking"),
    BlockKind.TOOL_CALL: ("input_json_delta", "partial_json"),
}
_BLOCK_STOP = 'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class StreamWriter(AnswerSink):
    """Writes the events of an answer as an Anthropic Messages SSE stream; ``take()``
    returns the bytes written since the last call.

    ``message_start`` is written at the first block (or at ``end``) with the usage known
    by then; ``message_delta`` (stop reason, final usage) and ``message_stop`` at ``end``.
    After ``end`` or ``error`` nothing more is written.
    """

    def __init__(self, ctx: AnswerContext):
        self._ctx = ctx
        self._out = []  # type: List[bytes]
        self._id = None  # type: Optional[str]
        # Every usage event merged: what the client's closing events report, and what
        # usage accounting reads after the stream.
        self.counted = Usage()
        self._stop = Stop.END_TURN
        self._stop_sequence = None  # type: Optional[str]
        self._started = False
        self._done = False
        self._open = None  # type: Optional[int]  # the index of the block being written
        # The open block's delta prefixes; None while no block is open (a stray delta,
        # or one after the end, writes nothing).
        self._delta_prefix = None  # type: Optional[bytes]
        self._signature_prefix = None  # type: Optional[bytes]

    def take(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def start(self, id, model):
        self._id = id

    def usage(self, usage):
        self.counted.merge(usage)

    def block_start(self, index, kind, id=None, name=None):
        if self._done:
            return
        self._begin()
        self._close_block()
        if kind is BlockKind.TOOL_CALL:
            block = {
                "type": "tool_use",
                "id": id or self._ctx.new_id("toolu_"),
                "name": _cased(name or "", self._ctx),
                "input": {},
                "signature": "",
            }
        elif kind is BlockKind.THINKING:
            block = {"type": "thinking", "thinking": "", "signature": ""}
            self._signature_prefix = (_DELTA_PREFIX % (index, "signature_delta", "signature")).encode("utf-8")
        else:
            block = _text_block("")
        self._write("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        self._open = index
        self._delta_prefix = (_DELTA_PREFIX % ((index,) + _DELTA_FIELDS[kind])).encode("utf-8")

    def text(self, index, text):
        prefix = self._delta_prefix
        if prefix is not None:
            self._out.append(prefix + json_string(text).encode("utf-8") + _DELTA_END)

    # Thinking text and argument fragments differ from text only in the prefix the
    # block's start chose.
    thinking = text
    arguments = text

    def deltas(self, index, kind, pieces):
        prefix = self._delta_prefix
        if prefix is not None:
            # One encode for the run: the events are the prefix and a piece, joined.
            head = prefix.decode("utf-8")
            run = (_DELTA_END_TEXT + head).join(map(json_string, pieces))
            self._out.append((head + run + _DELTA_END_TEXT).encode("utf-8"))

    def signature(self, index, value):
        prefix = self._signature_prefix
        if prefix is not None:
            self._out.append(prefix + json_string(value).encode("utf-8") + _DELTA_END)

    def block_stop(self, index):
        if not self._done:
            self._close_block()

    def finish(self, stop, stop_sequence=None):
        self._stop = stop
        self._stop_sequence = stop_sequence

    def end(self):
        if self._done:
            return
        self._begin()
        self._close_block()
        delta = {"stop_reason": _STOP_REASONS[self._stop], "stop_sequence": self._stop_sequence}
        self._write("message_delta", {"type": "message_delta", "delta": delta, "usage": _write_usage(self.counted)})
        self._out.append(_MESSAGE_STOP)
        self._done = True

    def error(self, error):
        if not self._done:
            self._out.append(error_event(PROTOCOL, error))
            self._done = True
            self._delta_prefix = self._signature_prefix = None

    def _begin(self) -> None:
        """Write ``message_start`` once."""
        if self._started:
            return
        self._started = True
        message = {
            "id": self._id or self._ctx.new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self._ctx.requested_model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _write_usage(self.counted),
        }
        self._write("message_start", {"type": "message_start", "message": message})

    def _close_block(self) -> None:
        if self._open is not None:
            self._out.append((_BLOCK_STOP % self._open).encode("ascii"))
            self._open = None
            self._delta_prefix = self._signature_prefix = None

    def _write(self, name: str, payload: dict) -> None:
        # What sse.encode_event writes: compact JSON holds no line break to split at.
        self._out.append(("event: %s\ndata: %s\n\n" % (name, dumps(payload))).encode("utf-8"))
