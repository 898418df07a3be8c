"""OpenAI Responses codec: client requests into the neutral model and back out as
provider requests; provider answers (whole and streamed) into the neutral model and back
out as client answers.

Strategy: the Responses API is a flat list of items (``message``, ``function_call``,
``function_call_output``, ``reasoning``) where the neutral model has role-tagged
messages, so reading groups items (an assistant turn's message, reasoning and calls make
one assistant message; consecutive call outputs one user message) and writing flattens
them again. Requests that depend on state kept by OpenAI (``previous_response_id``,
``conversation``, stored prompts, file ids, item references) are refused with
``BadRequest``: the proxy keeps none, and every request it writes says ``store: false``.

Answers: an output item becomes one block (``message`` → text, ``reasoning`` →
thinking with ``encrypted_content`` as its signature, ``function_call`` → tool call with
``call_id`` as its id); the stop reason comes from ``status``/``incomplete_details`` and
whether a call was made. The stream reader keys items by ``output_index`` and opens one
block at a time in order of appearance, buffering any item that streams while an earlier
one is still open; the final ``response.completed`` fills in what a terse provider never
streamed (items sent only whole, usage, status). The stream writer emits the documented
event sequence with a running ``sequence_number``; its deltas are string templates with
the JSON-encoded text spliced in, and ``response.completed`` (with the whole output and
the usage) is written at ``end()``, when stop reason and usage are final.
"""

from typing import Dict, List, Optional, Tuple

from cliproxy.config.model import Protocol
from cliproxy.errors import BadRequest, ProxyError, UpstreamError
from cliproxy.jsontext import loads
from cliproxy.routing.suffix import LEVELS, ThinkingKind, ThinkingSuffix
from cliproxy.translate.codecs.common import EventReader, data_url, dumps, json_string, log_dropped, parse_data_url
from cliproxy.translate.context import encode_json_value
from cliproxy.translate.errors import error_event
from cliproxy.translate.ir import (
    Answer,
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

PROTOCOL = Protocol.RESPONSES

# -- tables ------------------------------------------------------------------------------

# Message item roles. ``system`` and ``developer`` are the same instruction tier to us.
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM, "developer": Role.SYSTEM}
# Written roles: an in-conversation system message is a ``developer`` item, the role
# OpenAI's reasoning models take instructions from.
_ROLE_NAMES = {Role.USER: "user", Role.ASSISTANT: "assistant", Role.SYSTEM: "developer"}

_TOOL_CHOICE_MODES = {"auto": ToolChoiceMode.AUTO, "none": ToolChoiceMode.NONE, "required": ToolChoiceMode.ANY}
_TOOL_CHOICE_NAMES = {mode: name for name, mode in _TOOL_CHOICE_MODES.items()}

# ``incomplete_details.reason`` ↔ stop reason; every other stop is ``status: completed``.
_INCOMPLETE_STOPS = {"max_output_tokens": Stop.MAX_TOKENS, "content_filter": Stop.REFUSAL}
_INCOMPLETE_REASONS = {stop: reason for reason, stop in _INCOMPLETE_STOPS.items()}

# Top-level request fields the conversation takes; any other field is dropped (logged),
# except the ones below that cannot be served at all.
_READ_FIELDS = frozenset(
    (
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "stream",
        "user",
    )
)

# Fields naming state kept on OpenAI's side: the proxy cannot resolve them.
_STATEFUL_FIELDS = (
    ("previous_response_id", "previous_response_id is not supported here: this proxy keeps no "
     "conversation state, so send the whole conversation in input"),
    ("conversation", "conversation is not supported here: this proxy keeps no conversation state, "
     "so send the whole conversation in input"),
    ("prompt", "prompt (a stored prompt template) is not supported here: send the instructions "
     "and input themselves"),
)
_BACKGROUND_REFUSED = "background responses are not supported here: this proxy keeps no response state"
_FILE_ID_REFUSED = "%s.file_id is not supported here: it needs OpenAI's file store; send the data inline"

# Output item type → the block it streams as.
_ITEM_KINDS = {"message": BlockKind.TEXT, "reasoning": BlockKind.THINKING, "function_call": BlockKind.TOOL_CALL}

# Summary parts are paragraphs of one reasoning; one thinking text keeps them apart so.
_SUMMARY_SEPARATOR = "\n\n"
# Several system texts become one ``instructions`` string.
_INSTRUCTIONS_SEPARATOR = "\n\n"
# A call output is one string: the texts of a multi-part tool result, one per line.
_RESULT_SEPARATOR = "\n"
# ``input_file`` needs a file name with inline data; this one when the client gave none.
_DEFAULT_FILENAME = "file"

# Provider error codes (``error`` event, ``response.failed``'s ``error.code``, and the
# OpenAI error types ``translate/errors.py`` writes as ``code``) → (HTTP status, our kind).
_ERROR_KINDS = {
    "invalid_request_error": (400, "invalid_request_error"),
    "invalid_prompt": (400, "invalid_request_error"),
    "context_length_exceeded": (400, "invalid_request_error"),
    "authentication_error": (401, "authentication_error"),
    "insufficient_quota": (402, "payment_required"),
    "permission_error": (403, "permission_error"),
    "not_found_error": (404, "not_found_error"),
    "rate_limit_exceeded": (429, "rate_limit_error"),
    "rate_limit_error": (429, "rate_limit_error"),
    "server_error": (500, "api_error"),
    "api_error": (500, "api_error"),
    "server_is_overloaded": (529, "overloaded_error"),
}
_DEFAULT_ERROR_KIND = (502, "api_error")

# Item groups a message collects while reading input: the items of one assistant turn,
# or a run of call outputs.
_TURN = "turn"
_RESULTS = "results"


# -- small readers of untrusted values ---------------------------------------------------


def _string(value) -> Optional[str]:
    return value if isinstance(value, str) else None


def _integer(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _boolean(value) -> Optional[bool]:
    return value if isinstance(value, bool) else None


def _number(value) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _label(value) -> str:
    """A JSON value as a name for the dropped-fields log (strings as they are)."""
    return value if isinstance(value, str) else type(value).__name__


# -- requests: reading -------------------------------------------------------------------


def read_request(body: dict, model: Optional[str] = None, stream: Optional[bool] = None) -> Conversation:
    """A Responses request body → ``Conversation``. ``model`` is unused (the body names
    it); ``stream`` overrides the body's ``stream`` when not None. Raises ``BadRequest``
    for requests needing OpenAI-side state and for malformed input, instructions or
    tools; optional settings of the wrong type are ignored. Fields with no counterpart
    are logged once as dropped."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    _refuse_stateful(body)
    dropped = set(key for key in body if key not in _READ_FIELDS)
    conversation = Conversation(
        system=_read_instructions(body.get("instructions")),
        tools=_read_tools(body.get("tools"), dropped),
        tool_choice=_read_tool_choice(body.get("tool_choice"), dropped),
        parallel_tool_calls=_boolean(body.get("parallel_tool_calls")),
        max_output_tokens=_integer(body.get("max_output_tokens")),
        temperature=_number(body.get("temperature")),
        top_p=_number(body.get("top_p")),
        thinking=_read_reasoning_setting(body.get("reasoning"), dropped),
        stream=stream if stream is not None else body.get("stream") is True,
        user=_string(body.get("user")),
    )
    _read_input(body.get("input"), conversation, dropped)
    log_dropped(PROTOCOL, True, dropped)
    return name_results(conversation)


def _refuse_stateful(body: dict) -> None:
    for name, message in _STATEFUL_FIELDS:
        if body.get(name) is not None:
            raise BadRequest(message)
    if body.get("background") is True:
        raise BadRequest(_BACKGROUND_REFUSED)


def _read_instructions(value) -> List[Text]:
    if value is None:
        return []
    if not isinstance(value, str):
        raise BadRequest("instructions must be a string")
    return [Text(value)] if value else []


def _read_input(value, conversation: Conversation, dropped: set) -> None:
    """Append the input's messages to ``conversation`` (leading system and developer
    messages join ``conversation.system``)."""
    if value is None:
        return
    if isinstance(value, str):
        conversation.messages.append(Message(Role.USER, [Text(value)]))
        return
    if not isinstance(value, list):
        raise BadRequest("input must be a string or a list of items")
    messages = conversation.messages
    group = None  # what messages[-1] collects (_TURN, _RESULTS), None when it is closed
    for position, item in enumerate(value):
        where = "input[%d]" % position
        if not isinstance(item, dict):
            raise BadRequest("%s must be an object" % where)
        read = _read_item(item, where, dropped)
        if read is None:
            continue
        role, parts, item_group = read
        if not messages and role is Role.SYSTEM and all(isinstance(part, Text) for part in parts):
            conversation.system.extend(parts)
        elif item_group is not None and item_group == group:
            messages[-1].parts.extend(parts)
        else:
            messages.append(Message(role, parts))
        group = item_group


def _read_item(item: dict, where: str, dropped: set) -> Optional[Tuple[Role, list, Optional[str]]]:
    """(role, parts, group) of one input item, or None for an item with nothing to
    carry (an unknown kind, logged as dropped)."""
    kind = item.get("type")
    if kind is None and "role" in item:
        kind = "message"
    if kind == "message":
        return _read_message(item, where, dropped)
    if kind == "function_call":
        return Role.ASSISTANT, [_read_function_call(item, where)], _TURN
    if kind == "function_call_output":
        return Role.USER, [_read_function_output(item, where, dropped)], _RESULTS
    if kind == "reasoning":
        thinking = _read_reasoning_item(item)
        return None if thinking is None else (Role.ASSISTANT, [thinking], _TURN)
    if kind == "item_reference":
        raise BadRequest("%s: item_reference is not supported here: this proxy keeps no stored items, "
                         "so send the item itself" % where)
    dropped.add("input item %s" % _label(kind))
    return None


def _read_message(item: dict, where: str, dropped: set) -> Tuple[Role, list, Optional[str]]:
    role_name = item.get("role")
    role = _ROLES.get(role_name) if isinstance(role_name, str) else None
    if role is None:
        raise BadRequest("%s.role must be one of user, assistant, system, developer" % where)
    content = item.get("content")
    if isinstance(content, str):
        parts = [Text(content)]
    elif isinstance(content, list):
        parts = _read_parts(content, "%s.content" % where, dropped)
    else:
        raise BadRequest("%s.content must be a string or a list of content parts" % where)
    return role, parts, _TURN if role is Role.ASSISTANT else None


def _read_parts(content: list, where: str, dropped: set) -> list:
    parts = []
    for position, part in enumerate(content):
        read = _read_part(part, "%s[%d]" % (where, position), dropped)
        if read is not None:
            parts.append(read)
    return parts


def _read_part(part, where: str, dropped: set):
    """One content part as ``Text`` or ``Media``; None for a kind with no counterpart."""
    if not isinstance(part, dict):
        raise BadRequest("%s must be an object" % where)
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise BadRequest("%s.text must be a string" % where)
        return Text(text)
    if kind == "refusal":
        refusal = part.get("refusal")
        return Text(refusal) if isinstance(refusal, str) else None
    if kind == "input_image":
        return _read_image(part, where)
    if kind == "input_file":
        return _read_file(part, where)
    dropped.add("content part %s" % _label(kind))
    return None


def _read_image(part: dict, where: str) -> Media:
    if part.get("file_id") is not None:
        raise BadRequest(_FILE_ID_REFUSED % where)
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise BadRequest("%s.image_url must be a URL or a data: URL" % where)
    inline = parse_data_url(url)
    if inline is not None:
        return Media(inline[0], data=inline[1])
    return Media(url=url)


def _read_file(part: dict, where: str) -> Media:
    if part.get("file_id") is not None:
        raise BadRequest(_FILE_ID_REFUSED % where)
    filename = _string(part.get("filename"))
    file_data = part.get("file_data")
    if isinstance(file_data, str):
        inline = parse_data_url(file_data)
        if inline is None:
            raise BadRequest("%s.file_data must be a base64 data: URL" % where)
        return Media(inline[0], data=inline[1], filename=filename)
    url = part.get("file_url")
    if isinstance(url, str) and url:
        return Media(url=url, filename=filename)
    raise BadRequest("%s needs file_data or file_url" % where)


def _read_function_call(item: dict, where: str) -> ToolCall:
    call_id = item.get("call_id")
    name = item.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise BadRequest("%s: a function_call needs a string call_id and name" % where)
    arguments = item.get("arguments")
    if isinstance(arguments, str):
        parsed = parse_arguments(arguments)
    elif isinstance(arguments, dict):
        parsed = arguments
    elif arguments is None:
        parsed = {}
    else:
        raise BadRequest("%s.arguments must be a JSON string" % where)
    return ToolCall(call_id, name, parsed)


def _read_function_output(item: dict, where: str, dropped: set) -> ToolResult:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        raise BadRequest("%s: a function_call_output needs a string call_id" % where)
    output = item.get("output")
    if isinstance(output, str):
        content = [Text(output)]
    elif isinstance(output, list):
        content = _read_parts(output, "%s.output" % where, dropped)
    elif output is None:
        content = []
    else:
        raise BadRequest("%s.output must be a string or a list of content parts" % where)
    return ToolResult(call_id, content)


def _read_reasoning_item(item: dict) -> Optional[Thinking]:
    """A reasoning item as ``Thinking`` (its summary, else its raw reasoning text;
    ``encrypted_content`` as the signature), None when it carries neither."""
    text = _joined_texts(item.get("summary"), "summary_text") or _joined_texts(item.get("content"), "reasoning_text")
    signature = _string(item.get("encrypted_content"))
    if not text and not signature:
        return None
    return Thinking(text, signature=signature)


def _joined_texts(parts, kind: str) -> str:
    """The ``text`` of every part of type ``kind`` in ``parts``, summary-separated."""
    if not isinstance(parts, list):
        return ""
    texts = [part["text"] for part in parts if isinstance(part, dict) and part.get("type") == kind
             and isinstance(part.get("text"), str)]
    return _SUMMARY_SEPARATOR.join(texts)


def _read_tools(value, dropped: set) -> List[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("tools must be a list")
    tools = []
    for position, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise BadRequest("tools[%d] must be an object" % position)
        kind = tool.get("type")
        if kind != "function":
            # Built-in tools (web_search, file_search, code_interpreter, mcp, ...) run
            # on OpenAI's side; no other provider can run them.
            dropped.add("tools %s" % _label(kind))
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("tools[%d].name must be a non-empty string" % position)
        if "strict" in tool:
            dropped.add("tools strict")
        parameters = tool.get("parameters")
        description = _string(tool.get("description"))
        if isinstance(parameters, dict):
            tools.append(Tool(name, description, parameters))
        else:
            tools.append(Tool(name, description))
    return tools


def _read_tool_choice(value, dropped: set) -> Optional[ToolChoice]:
    if isinstance(value, str):
        mode = _TOOL_CHOICE_MODES.get(value)
        return None if mode is None else ToolChoice(mode)
    if isinstance(value, dict):
        name = value.get("name")
        if value.get("type") == "function" and isinstance(name, str):
            return ToolChoice(ToolChoiceMode.TOOL, name)
        dropped.add("tool_choice %s" % _label(value.get("type")))
    return None


def _read_reasoning_setting(value, dropped: set) -> Optional[ThinkingSuffix]:
    """``reasoning.effort`` as a thinking setting (``none`` → NONE, a level → LEVEL)."""
    if not isinstance(value, dict):
        return None
    dropped.update("reasoning.%s" % key for key in value if key != "effort")
    effort = value.get("effort")
    if effort == "none":
        return ThinkingSuffix(ThinkingKind.NONE)
    if isinstance(effort, str) and effort in LEVELS:
        return ThinkingSuffix(ThinkingKind.LEVEL, level=effort)
    return None


# -- requests: writing -------------------------------------------------------------------


def write_request(conversation: Conversation, model: str) -> dict:
    """``conversation`` → a Responses request body for upstream ``model``, with
    ``store: false`` (the proxy keeps no state). Stop sequences and ``top_k`` have no
    counterpart and are dropped (logged), as are thinking parts without a signature and
    the error flag of tool results."""
    dropped = set()
    body = {"model": model}  # type: Dict[str, object]
    if conversation.system:
        body["instructions"] = _INSTRUCTIONS_SEPARATOR.join(text.text for text in conversation.system)
    body["input"] = _write_input(conversation.messages, dropped)
    if conversation.tools:
        body["tools"] = [_write_tool(tool) for tool in conversation.tools]
    if conversation.tool_choice is not None:
        body["tool_choice"] = _write_tool_choice(conversation.tool_choice)
    if conversation.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = conversation.parallel_tool_calls
    _put(body, "max_output_tokens", conversation.max_output_tokens)
    _put(body, "temperature", conversation.temperature)
    _put(body, "top_p", conversation.top_p)
    _put(body, "user", conversation.user)
    if conversation.stream:
        body["stream"] = True
    body["store"] = False
    if conversation.stop:
        dropped.add("stop")
    if conversation.top_k is not None:
        dropped.add("top_k")
    apply_suffix(PROTOCOL, body, conversation.thinking, model)
    log_dropped(PROTOCOL, False, dropped)
    return body


def _put(body: dict, key: str, value) -> None:
    if value is not None:
        body[key] = value


def _write_input(messages: List[Message], dropped: set) -> list:
    items = []  # type: List[dict]
    for message in messages:
        _write_message(message, items, dropped)
    return items


def _write_message(message: Message, items: list, dropped: set) -> None:
    """Append ``message`` to ``items``: runs of text and media as message items, calls,
    call outputs and signed reasoning as items of their own, in order. Media of tool
    results follow their run of call outputs as a user message (a call output is text)."""
    role = message.role
    content = []  # type: List[dict]
    result_media = []  # type: List[dict]
    for part in message.parts:
        if result_media and not isinstance(part, ToolResult):
            items.append(_message_input("user", result_media))
            result_media = []
        if isinstance(part, (Text, Media)):
            written = _write_content(part, role, dropped)
            if written is not None:
                content.append(written)
            continue
        if content:
            items.append(_message_input(_ROLE_NAMES[role], content))
            content = []
        if isinstance(part, ToolCall):
            items.append({"type": "function_call", "call_id": part.id, "name": part.name,
                          "arguments": dumps(part.arguments)})
        elif isinstance(part, ToolResult):
            items.append(_write_result(part, result_media, dropped))
        elif isinstance(part, Thinking):
            _write_thinking(part, items, dropped)
    if content:
        items.append(_message_input(_ROLE_NAMES[role], content))
    if result_media:
        items.append(_message_input("user", result_media))


def _message_input(role: str, content: list) -> dict:
    return {"type": "message", "role": role, "content": content}


def _write_content(part, role: Role, dropped: set) -> Optional[dict]:
    if isinstance(part, Text):
        return {"type": "output_text" if role is Role.ASSISTANT else "input_text", "text": part.text}
    if role is Role.ASSISTANT:
        dropped.add("assistant media")  # assistant items hold text only
        return None
    return _write_media(part)


def _write_media(media: Media) -> dict:
    is_image = media.media_type.startswith("image/") if media.media_type else media.url is not None
    if is_image:
        url = media.url if media.data is None else data_url(media.media_type, media.data)
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    if media.data is not None:
        return {"type": "input_file", "filename": media.filename or _DEFAULT_FILENAME,
                "file_data": data_url(media.media_type, media.data)}
    written = {"type": "input_file", "file_url": media.url}
    if media.filename:
        written["filename"] = media.filename
    return written


def _write_result(result: ToolResult, media: list, dropped: set) -> dict:
    """A ``function_call_output`` item; the result's media are added to ``media``."""
    texts = []
    for part in result.content:
        if isinstance(part, Text):
            texts.append(part.text)
        else:
            media.append(_write_media(part))
    if result.is_error:
        dropped.add("tool result is_error")
    return {"type": "function_call_output", "call_id": result.call_id, "output": _RESULT_SEPARATOR.join(texts)}


def _write_thinking(thinking: Thinking, items: list, dropped: set) -> None:
    """A signed thinking part goes back as a reasoning item (its signature is the
    ``encrypted_content`` a Responses provider gave); an unsigned one carries nothing a
    provider can use."""
    if not thinking.signature:
        dropped.add("thinking without signature")
        return
    summary = [{"type": "summary_text", "text": thinking.text}] if thinking.text else []
    items.append({"type": "reasoning", "summary": summary, "encrypted_content": thinking.signature})


def _write_tool(tool: Tool) -> dict:
    # ``strict`` defaults to true in this API, which needs schemas written for it;
    # schemas from other protocols are not, so it is turned off.
    written = {"type": "function", "name": tool.name}  # type: Dict[str, object]
    if tool.description is not None:
        written["description"] = tool.description
    written["parameters"] = tool.schema
    written["strict"] = False
    return written


def _write_tool_choice(choice: ToolChoice):
    if choice.mode is ToolChoiceMode.TOOL:
        return {"type": "function", "name": choice.name}
    return _TOOL_CHOICE_NAMES[choice.mode]


# -- answers: shared shapes --------------------------------------------------------------


def _message_item(item_id: str, text: str) -> dict:
    return {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "content": [_text_part(text)],
        "role": "assistant",
    }


def _text_part(text: str) -> dict:
    return {"type": "output_text", "annotations": [], "text": text}


def _summary_part(text: str) -> dict:
    return {"type": "summary_text", "text": text}


def _reasoning_item(item_id: str, text: str, signature: Optional[str]) -> dict:
    item = {"id": item_id, "type": "reasoning", "summary": [_summary_part(text)] if text else []}
    if signature:
        item["encrypted_content"] = signature
    return item


def _function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def _usage_object(usage: Usage) -> Optional[dict]:
    """The ``usage`` object (every count the SDKs require, 0 where unknown), or None when
    no count is known."""
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    input_tokens = usage.input_tokens or 0
    output_tokens = usage.output_tokens or 0
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read or 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning or 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _response_object(response_id: str, created_at: int, model: str, stop: Optional[Stop], output: list,
                     usage: Optional[dict]) -> dict:
    """A response object; ``stop`` None means still in progress. The request settings
    the SDKs' ``Response`` model requires (``parallel_tool_calls``, ``tool_choice``,
    ``tools``) carry the API's defaults: the answer does not know the request."""
    if stop is None:
        status, incomplete = "in_progress", None
    elif stop in _INCOMPLETE_REASONS:
        status, incomplete = "incomplete", {"reason": _INCOMPLETE_REASONS[stop]}
    else:
        status, incomplete = "completed", None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def _provider_error(error) -> ProxyError:
    """A provider's error object (``code``, ``message``) as a ``ProxyError``."""
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    status, kind = _ERROR_KINDS.get(code, _DEFAULT_ERROR_KIND) if isinstance(code, str) else _DEFAULT_ERROR_KIND
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = "the Responses provider failed" + (" (%s)" % code if isinstance(code, str) else "")
    return ProxyError(message, status=status, error_type=kind)


def read_usage(value) -> Usage:
    """A response's ``usage`` object → Usage (empty for anything that is not an object)."""
    return _read_usage(value)


def _read_usage(value) -> Usage:
    """A ``usage`` object as ``Usage``. A detail count of 0 reads as unknown: the API
    writes 0 both for "none" and for "not measured"."""
    if not isinstance(value, dict):
        return Usage()
    return Usage(
        input_tokens=_integer(value.get("input_tokens")),
        output_tokens=_integer(value.get("output_tokens")),
        cache_read=_detail(value, "input_tokens_details", "cached_tokens"),
        reasoning=_detail(value, "output_tokens_details", "reasoning_tokens"),
    )


def _detail(usage: dict, group: str, name: str) -> Optional[int]:
    details = usage.get(group)
    count = _integer(details.get(name)) if isinstance(details, dict) else None
    return count or None


def _read_stop(response: dict, called: bool, refused: bool) -> Stop:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        # An incomplete answer without a known reason ran out of room: the usual cause.
        return _INCOMPLETE_STOPS.get(reason, Stop.MAX_TOKENS) if isinstance(reason, str) else Stop.MAX_TOKENS
    if refused:
        return Stop.REFUSAL
    return Stop.TOOL_USE if called else Stop.END_TURN


# -- answers: whole ----------------------------------------------------------------------


def read_response(document: dict) -> Answer:
    """A provider's whole Responses answer → ``Answer``. Raises ``UpstreamError`` when
    ``document`` has no ``output`` list, and the provider's error (a ``ProxyError``)
    for a ``failed`` response."""
    if not isinstance(document, dict) or not isinstance(document.get("output"), list):
        raise UpstreamError("the provider's answer is not a Responses answer (no output list)")
    if document.get("status") == "failed":
        raise _provider_error(document.get("error"))
    answer = Answer(id=_string(document.get("id")), model=_string(document.get("model")),
                    usage=_read_usage(document.get("usage")))
    refused = False
    for item in document["output"]:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            refused = _read_output_message(item, answer.parts) or refused
        elif kind == "reasoning":
            thinking = _read_reasoning_item(item)
            if thinking is not None:
                answer.parts.append(thinking)
        elif kind == "function_call":
            answer.parts.append(_read_output_call(item))
    called = any(isinstance(part, ToolCall) for part in answer.parts)
    answer.stop = _read_stop(document, called, refused)
    return answer


def _read_output_message(item: dict, parts: list) -> bool:
    """Append a message item's texts to ``parts``; True when it holds a refusal."""
    refused = False
    content = item.get("content")
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "output_text" and isinstance(part.get("text"), str):
            parts.append(Text(part["text"]))
        elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            parts.append(Text(part["refusal"]))
            refused = True
    return refused


def _read_output_call(item: dict) -> ToolCall:
    arguments = item.get("arguments")
    return ToolCall(
        _string(item.get("call_id")) or _string(item.get("id")) or "",
        _string(item.get("name")) or "",
        parse_arguments(arguments) if isinstance(arguments, str) else {},
    )


def write_response(answer: Answer, ctx) -> dict:
    """``answer`` → the client's whole Responses answer under ``ctx.requested_model``;
    missing ids come from ``ctx.new_id`` (``resp_``, then per item ``msg_``, ``rs_``,
    ``fc_``/``call_``), ``created_at`` from ``ctx.created()``."""
    response_id = answer.id or ctx.new_id("resp_")
    output = []
    for part in answer.parts:
        if isinstance(part, Text):
            output.append(_message_item(ctx.new_id("msg_"), part.text))
        elif isinstance(part, Thinking):
            if part.text or part.signature:
                output.append(_reasoning_item(ctx.new_id("rs_"), part.text, part.signature))
        elif isinstance(part, ToolCall):
            item_id = ctx.new_id("fc_")
            output.append(_function_call_item(item_id, part.id or ctx.new_id("call_"), part.name,
                                              dumps(part.arguments), "completed"))
    return _response_object(response_id, ctx.created(), ctx.requested_model, answer.stop, output,
                            _usage_object(answer.usage))


# -- answers: reading a provider stream --------------------------------------------------


class _Item:
    """One output item of a provider stream, on its way to becoming a block.

    ``pending`` holds the item's fragments while its block is not open (an earlier item
    is still streaming, or nothing shows yet whether the item has content); ``content``
    says whether any fragment arrived; ``index`` is the block's index once opened."""

    __slots__ = ("kind", "id", "name", "index", "emit", "pending", "content", "signature", "done")

    def __init__(self, kind: BlockKind):
        self.kind = kind
        self.id = None  # type: Optional[str]
        self.name = None  # type: Optional[str]
        self.index = None  # type: Optional[int]
        self.emit = None  # the sink's method for this item's fragments, once opened
        self.pending = []  # type: List[str]
        self.content = False
        self.signature = None  # type: Optional[str]
        self.done = False

    def ready(self) -> bool:
        """Whether the block can open: a call once its name is known, text and thinking
        once they show content (an empty reasoning item makes no block)."""
        if self.done:
            return True
        if self.kind is BlockKind.TOOL_CALL:
            return self.name is not None
        return self.content

    def empty(self) -> bool:
        return self.kind is not BlockKind.TOOL_CALL and not self.content and not self.signature


class StreamReader(EventReader):
    """Reads a provider's Responses stream into an ``AnswerSink`` (see the module
    docstring): ``feed(event)`` per SSE event, ``close()`` at the end of the stream."""

    def __init__(self, sink: AnswerSink):
        self._sink = sink
        self._items = {}  # type: Dict[object, _Item]  # by output_index and by item id
        self._queue = []  # type: List[_Item]  # items not yet stopped, in order; head may be open
        self._next_index = 0
        self._started = False
        self._finished = False  # the terminal event or an error arrived
        self._called = False
        self._refused = False

    def feed(self, event) -> None:
        """Handle one parsed SSE event. Raises ``UpstreamError`` when its data is not
        JSON; events of no interest are ignored."""
        data = event.data
        if self._finished or not data or data == "[DONE]":
            return
        try:
            obj = loads(data)
        except ValueError:
            raise UpstreamError("the Responses provider sent an event that is not JSON")
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, obj)

    def close(self) -> None:
        """The provider's stream ended. Raises ``UpstreamError`` when it ended before
        its terminal event and no error was reported."""
        if not self._finished:
            raise UpstreamError("the Responses stream ended before response.completed")

    # -- events

    def _created(self, obj: dict) -> None:
        response = obj.get("response")
        if isinstance(response, dict):
            self._start(_string(response.get("id")), _string(response.get("model")))

    def _item_added(self, obj: dict) -> None:
        item = self._item_of(obj)
        if item is not None:
            self._pump()

    def _item_done(self, obj: dict) -> None:
        item = self._item_of(obj)
        if item is not None and not item.done:
            self._complete(item, obj["item"])
            self._pump()

    def _text_delta(self, obj: dict) -> None:
        self._delta(obj, BlockKind.TEXT, obj.get("delta"))

    def _refusal_delta(self, obj: dict) -> None:
        self._refused = True
        self._delta(obj, BlockKind.TEXT, obj.get("delta"))

    def _thinking_delta(self, obj: dict) -> None:
        self._delta(obj, BlockKind.THINKING, obj.get("delta"))

    def _summary_part(self, obj: dict) -> None:
        """A later summary part starts a new paragraph of the same thinking."""
        summary_index = _integer(obj.get("summary_index"))
        item = self._find(obj)
        if summary_index and item is not None and item.content:
            self._delta(obj, BlockKind.THINKING, _SUMMARY_SEPARATOR)

    def _arguments_delta(self, obj: dict) -> None:
        self._delta(obj, BlockKind.TOOL_CALL, obj.get("delta"))

    def _completed(self, obj: dict) -> None:
        response = obj.get("response")
        if not isinstance(response, dict):
            response = {}
        self._start(_string(response.get("id")), _string(response.get("model")))
        output = response.get("output")
        if isinstance(output, list):
            self._reconcile(output)
        for item in self._queue:
            item.done = True
        self._pump()
        usage = _read_usage(response.get("usage"))
        if usage != Usage():
            self._sink.usage(usage)
        self._finished = True
        self._sink.finish(_read_stop(response, self._called, self._refused))
        self._sink.end()

    def _failed(self, obj: dict) -> None:
        response = obj.get("response")
        self._fail(response.get("error") if isinstance(response, dict) else None)

    def _error(self, obj: dict) -> None:
        nested = obj.get("error")
        self._fail(nested if isinstance(nested, dict) else obj)

    # -- items

    def _find(self, obj: dict) -> Optional[_Item]:
        item = self._items.get(_integer(obj.get("output_index")))
        if item is None:
            item = self._items.get(_string(obj.get("item_id")))
        return item

    def _item_of(self, obj: dict) -> Optional[_Item]:
        """The item an ``output_item`` event names, registered on first sight; None for
        an item kind that makes no block (built-in tool calls)."""
        body = obj.get("item")
        if not isinstance(body, dict):
            return None
        kind_name = body.get("type")
        kind = _ITEM_KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            return None
        item = self._find(obj) or self._items.get(_string(body.get("id")))
        if item is None:
            item = self._register(kind, _integer(obj.get("output_index")), _string(body.get("id")))
        if kind is BlockKind.TOOL_CALL and item.name is None:
            item.id = _string(body.get("call_id"))
            item.name = _string(body.get("name"))
        return item

    def _register(self, kind: BlockKind, output_index: Optional[int], item_id: Optional[str]) -> _Item:
        item = _Item(kind)
        if output_index is not None:
            self._items[output_index] = item
        if item_id is not None:
            self._items[item_id] = item
        self._queue.append(item)
        return item

    def _delta(self, obj: dict, kind: BlockKind, fragment) -> None:
        if not isinstance(fragment, str) or not fragment:
            return
        item = self._find(obj)
        if item is None:
            # A provider that streams deltas without announcing the item.
            item = self._register(kind, _integer(obj.get("output_index")), _string(obj.get("item_id")))
        if item.done:
            return
        item.content = True
        if item.index is not None:
            item.emit(item.index, fragment)
        else:
            item.pending.append(fragment)
            self._pump()

    def _complete(self, item: _Item, body: dict) -> None:
        """Mark ``item`` done, taking from its whole form ``body`` what it did not
        stream: a call's id and name, all of the content when no delta came."""
        item.done = True
        if item.kind is BlockKind.TOOL_CALL:
            item.id = item.id or _string(body.get("call_id")) or _string(body.get("id"))
            item.name = item.name or _string(body.get("name"))
            text = _string(body.get("arguments")) or ""
        elif item.kind is BlockKind.THINKING:
            item.signature = _string(body.get("encrypted_content"))
            thinking = _read_reasoning_item(body)
            text = thinking.text if thinking is not None else ""
        else:
            parts = []
            self._refused = _read_output_message(body, parts) or self._refused
            text = "".join(part.text for part in parts)
        if text and not item.content:
            item.content = True
            item.pending.append(text)

    def _reconcile(self, output: list) -> None:
        """Complete every item from the final response's ``output``, adding the ones
        the stream never showed."""
        for position, body in enumerate(output):
            if not isinstance(body, dict):
                continue
            kind_name = body.get("type")
            kind = _ITEM_KINDS.get(kind_name) if isinstance(kind_name, str) else None
            if kind is None:
                continue
            item = self._items.get(position) or self._items.get(_string(body.get("id")))
            if item is None:
                item = self._register(kind, position, _string(body.get("id")))
            if not item.done:
                self._complete(item, body)

    def _pump(self) -> None:
        """Open, feed and stop blocks from the head of the queue while they can go."""
        queue = self._queue
        while queue:
            item = queue[0]
            if item.index is None:
                if not item.ready():
                    return
                if item.done and item.empty():
                    queue.pop(0)
                    continue
                self._open(item)
            if item.pending:
                for fragment in item.pending:
                    item.emit(item.index, fragment)
                item.pending = []
            if not item.done:
                return
            if item.signature:
                self._sink.signature(item.index, item.signature)
            self._sink.block_stop(item.index)
            queue.pop(0)

    def _open(self, item: _Item) -> None:
        self._start(None, None)
        sink = self._sink
        item.index = self._next_index
        self._next_index += 1
        if item.kind is BlockKind.TOOL_CALL:
            self._called = True
            sink.block_start(item.index, item.kind, item.id or "", item.name or "")
            item.emit = sink.arguments
        else:
            sink.block_start(item.index, item.kind)
            item.emit = sink.text if item.kind is BlockKind.TEXT else sink.thinking

    def _start(self, response_id: Optional[str], model: Optional[str]) -> None:
        if not self._started:
            self._started = True
            self._sink.start(response_id, model)

    def _fail(self, error) -> None:
        self._finished = True
        self._sink.error(_provider_error(error))


_HANDLERS = {
    "response.created": StreamReader._created,
    "response.in_progress": StreamReader._created,
    "response.output_item.added": StreamReader._item_added,
    "response.output_item.done": StreamReader._item_done,
    "response.output_text.delta": StreamReader._text_delta,
    "response.refusal.delta": StreamReader._refusal_delta,
    "response.reasoning_summary_part.added": StreamReader._summary_part,
    "response.reasoning_summary_text.delta": StreamReader._thinking_delta,
    "response.reasoning_text.delta": StreamReader._thinking_delta,
    "response.function_call_arguments.delta": StreamReader._arguments_delta,
    "response.completed": StreamReader._completed,
    "response.incomplete": StreamReader._completed,
    "response.failed": StreamReader._failed,
    "error": StreamReader._error,
}


# -- answers: writing a client stream ----------------------------------------------------


def _delta_head(event_type: str) -> str:
    """The text of a delta event up to its sequence number."""
    return 'event: %s\ndata: {"type":"%s","sequence_number":' % (event_type, event_type)


_TEXT_DELTA = _delta_head("response.output_text.delta")
_SUMMARY_DELTA = _delta_head("response.reasoning_summary_text.delta")
_ARGUMENTS_DELTA = _delta_head("response.function_call_arguments.delta")
# The fields between the sequence number and the delta, per block kind.
_TEXT_FIELDS = ',"item_id":%s,"output_index":%d,"content_index":0,"delta":'
_SUMMARY_FIELDS = ',"item_id":%s,"output_index":%d,"summary_index":0,"delta":'
_ARGUMENTS_FIELDS = ',"item_id":%s,"output_index":%d,"delta":'
_DELTA_END = "}\n\n"


class _Block:
    """The output item a ``StreamWriter`` is writing: its ids, its text so far and the
    fixed parts of its delta events."""

    __slots__ = ("index", "kind", "item_id", "call_id", "name", "output_index", "fragments", "head", "fields",
                 "part_open", "signature")

    def __init__(self, index: int, kind: BlockKind, item_id: str, output_index: int):
        self.index = index
        self.kind = kind
        self.item_id = item_id
        self.output_index = output_index
        self.call_id = ""
        self.name = ""
        self.fragments = []  # type: List[str]
        self.head = ""
        self.fields = ""
        self.part_open = False  # a reasoning block's summary part has been announced
        self.signature = ""


class StreamWriter(AnswerSink):
    """Writes a Responses SSE stream for the client (see the module docstring);
    ``take()`` returns the bytes written since the last call."""

    def __init__(self, ctx):
        self._ctx = ctx
        self._out = []  # type: List[str]
        self._sequence = 0
        self._response_id = None  # type: Optional[str]
        self._created_at = 0
        self._closed = False
        self._block = None  # type: Optional[_Block]
        self._output = []  # type: List[dict]  # finished items, for the final response
        # Every usage event merged: what the client's closing events report, and what
        # usage accounting reads after the stream.
        self.counted = Usage()
        self._stop = Stop.END_TURN

    def take(self) -> bytes:
        data = "".join(self._out).encode("utf-8")
        self._out = []
        return data

    # -- events

    def start(self, id, model):
        if self._response_id is None and not self._closed:
            self._open(id)

    def block_start(self, index, kind, id=None, name=None):
        if self._closed:
            return
        self._ensure_open()
        if self._block is not None:
            self._stop_block(self._block)
        output_index = len(self._output)
        if kind is BlockKind.TEXT:
            self._block = self._start_message(index, output_index)
        elif kind is BlockKind.THINKING:
            self._block = self._start_reasoning(index, output_index)
        else:
            self._block = self._start_call(index, output_index, id, name)

    def text(self, index, text):
        block = self._block
        if block is not None and block.index == index:
            self._delta(block, text)

    def thinking(self, index, text):
        block = self._block
        if block is not None and block.index == index:
            if not block.part_open:
                block.part_open = True
                part = _where(block, "summary_index", part=_summary_part(""))
                self._event("response.reasoning_summary_part.added", part)
            self._delta(block, text)

    def signature(self, index, value):
        block = self._block
        if block is not None and block.index == index:
            block.signature += value

    def arguments(self, index, fragment):
        block = self._block
        if block is not None and block.index == index:
            self._delta(block, fragment)

    def block_stop(self, index):
        block = self._block
        if block is not None and block.index == index:
            self._stop_block(block)

    def usage(self, usage):
        if not self._closed:
            self._ensure_open()
            self.counted.merge(usage)

    def finish(self, stop, stop_sequence=None):
        if not self._closed:
            self._ensure_open()
            self._stop = stop

    def end(self):
        if self._closed:
            return
        self._ensure_open()
        if self._block is not None:
            self._stop_block(self._block)
        name = "response.incomplete" if self._stop in _INCOMPLETE_REASONS else "response.completed"
        self._event(name, {"response": self._response(self._stop, self._output, _usage_object(self.counted))})
        self._closed = True

    def error(self, error):
        if self._closed:
            return
        self._ensure_open()
        self._block = None
        self._out.append(error_event(PROTOCOL, error).decode("utf-8"))
        self._closed = True

    # -- writing

    def _ensure_open(self) -> None:
        if self._response_id is None:
            self._open(None)

    def _open(self, response_id: Optional[str]) -> None:
        self._response_id = response_id or self._ctx.new_id("resp_")
        self._created_at = self._ctx.created()
        for name in ("response.created", "response.in_progress"):
            self._event(name, {"response": self._response(None, [], None)})

    def _response(self, stop: Optional[Stop], output: list, usage: Optional[dict]) -> dict:
        return _response_object(self._response_id, self._created_at, self._ctx.requested_model, stop, output, usage)

    def _event(self, name: str, fields: dict) -> None:
        payload = {"type": name, "sequence_number": self._sequence}
        payload.update(fields)
        self._sequence += 1
        self._out.append("event: %s\ndata: %s\n\n" % (name, dumps(payload)))

    def _delta(self, block: _Block, fragment: str) -> None:
        if not fragment:
            return
        block.fragments.append(fragment)
        self._out.append("%s%d%s%s%s" % (block.head, self._sequence, block.fields, json_string(fragment),
                                         _DELTA_END))
        self._sequence += 1

    def _new_block(self, index: int, kind: BlockKind, prefix: str, output_index: int, head: str,
                   fields: str) -> _Block:
        block = _Block(index, kind, self._ctx.new_id(prefix), output_index)
        block.head = head
        block.fields = fields % (encode_json_value(block.item_id), output_index)
        return block

    def _start_message(self, index: int, output_index: int) -> _Block:
        block = self._new_block(index, BlockKind.TEXT, "msg_", output_index, _TEXT_DELTA, _TEXT_FIELDS)
        item = {"id": block.item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
        self._event("response.output_item.added", {"output_index": output_index, "item": item})
        self._event("response.content_part.added", _where(block, "content_index", part=_text_part("")))
        return block

    def _start_reasoning(self, index: int, output_index: int) -> _Block:
        block = self._new_block(index, BlockKind.THINKING, "rs_", output_index, _SUMMARY_DELTA, _SUMMARY_FIELDS)
        item = {"id": block.item_id, "type": "reasoning", "summary": []}
        self._event("response.output_item.added", {"output_index": output_index, "item": item})
        return block

    def _start_call(self, index: int, output_index: int, call_id: Optional[str], name: Optional[str]) -> _Block:
        block = self._new_block(index, BlockKind.TOOL_CALL, "fc_", output_index, _ARGUMENTS_DELTA,
                                _ARGUMENTS_FIELDS)
        block.call_id = call_id or self._ctx.new_id("call_")
        block.name = name or ""
        item = _function_call_item(block.item_id, block.call_id, block.name, "", "in_progress")
        self._event("response.output_item.added", {"output_index": output_index, "item": item})
        return block

    def _stop_block(self, block: _Block) -> None:
        self._block = None
        text = "".join(block.fragments)
        if block.kind is BlockKind.TEXT:
            item = self._stop_message(block, text)
        elif block.kind is BlockKind.THINKING:
            item = self._stop_reasoning(block, text)
        else:
            item = self._stop_call(block, text)
        self._output.append(item)
        self._event("response.output_item.done", {"output_index": block.output_index, "item": item})

    def _stop_message(self, block: _Block, text: str) -> dict:
        self._event("response.output_text.done", _where(block, "content_index", text=text))
        self._event("response.content_part.done", _where(block, "content_index", part=_text_part(text)))
        return _message_item(block.item_id, text)

    def _stop_reasoning(self, block: _Block, text: str) -> dict:
        if block.part_open:
            self._event("response.reasoning_summary_text.done", _where(block, "summary_index", text=text))
            part = _where(block, "summary_index", part=_summary_part(text))
            self._event("response.reasoning_summary_part.done", part)
        return _reasoning_item(block.item_id, text, block.signature or None)

    def _stop_call(self, block: _Block, arguments: str) -> dict:
        self._event(
            "response.function_call_arguments.done",
            {"item_id": block.item_id, "output_index": block.output_index, "name": block.name,
             "arguments": arguments},
        )
        return _function_call_item(block.item_id, block.call_id, block.name, arguments, "completed")


def _where(block: _Block, index_name: str, **fields) -> dict:
    """The fields locating a part of ``block`` (its only content or summary part, index
    0), followed by ``fields``."""
    located = {"item_id": block.item_id, "output_index": block.output_index, index_name: 0}
    located.update(fields)
    return located
