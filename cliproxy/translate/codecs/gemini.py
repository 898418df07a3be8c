"""Gemini generateContent ↔ the neutral model: requests, whole answers and streams.

Strategy: a Gemini request is ``contents`` (turns of ``user`` and ``model`` parts),
``systemInstruction``, ``tools``, ``toolConfig`` and ``generationConfig``; the model and
the stream flag are in the URL, so ``read_request`` takes them as arguments and
``write_request`` writes neither. Clients send camelCase or snake_case field names
(``_field`` reads both). Gemini calls and results are paired by name and order, ids
being optional: a call read without an id gets ``call_<turn>_<part>`` and a result
without one the id of the earliest unanswered call of its name, so ids always agree.
Written calls keep their ids and carry the thought signature Google documents for
history the model did not produce (``SIGNATURE_PLACEHOLDER``): Gemini 3 rejects function
calls without one, and the neutral model keeps no Gemini signature for a call.

Answers: one reader serves both shapes. ``StreamReader`` turns each ``alt=sse`` chunk (a
partial ``GenerateContentResponse``) into events: text and thought parts are deltas of
the open block, a ``functionCall`` arrives whole and is a block of its own. Gemini has
no terminal event: the chunk with a ``finishReason`` (or a ``promptFeedback`` block)
makes the answer complete and ``close()`` (end of stream) ends it. ``read_response``
feeds a whole answer to the same reader as a single chunk. ``StreamWriter`` writes one
chunk per delta from byte templates made once per stream, a call when its block stops,
and the ``finishReason`` and usage in a last chunk at ``end()``; as ``data:`` events
ending in CRLF CRLF like the API's, or for a client without ``alt=sse`` as the JSON
array the API streams then (``[``, chunks joined by ``\\n,\\r\\n``, ``\\n]``).

Usage: Gemini's ``candidatesTokenCount`` leaves out the thinking tokens that
``thoughtsTokenCount`` counts, while the neutral ``output_tokens`` includes them.
"""

import re
from typing import Dict, List, Optional, Tuple

from cliproxy.config.model import Protocol
from cliproxy.errors import BadRequest, ProxyError, UpstreamError
from cliproxy.http.sse import Event
from cliproxy.jsontext import loads
from cliproxy.routing.suffix import LEVELS, ThinkingKind, ThinkingSuffix
from cliproxy.translate.codecs.common import EventReader, dumps, json_string, log_dropped, parse_data_url
from cliproxy.translate.codecs.gemini_schema import from_gemini, to_gemini
from cliproxy.translate.context import encode_json_value
from cliproxy.translate.errors import error_body, error_event
from cliproxy.translate.ir import (
    Answer,
    AnswerBuilder,
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
    parse_arguments,
)
from cliproxy.translate.thinking import apply_suffix

__all__ = [
    "PROTOCOL",
    "SIGNATURE_PLACEHOLDER",
    "StreamReader",
    "StreamWriter",
    "read_request",
    "read_response",
    "read_usage",
    "write_request",
    "write_response",
]

PROTOCOL = Protocol.GEMINI

# Google's documented thoughtSignature for function calls in history that Gemini did not
# produce (a conversation moved from another model): it skips the signature check.
SIGNATURE_PLACEHOLDER = "skip_thought_signature_validator"

# Content roles; early function-calling examples sent function responses as "function".
_ROLES = {"user": Role.USER, "model": Role.ASSISTANT, "function": Role.USER}
_WRITE_ROLES = {Role.USER: "user", Role.ASSISTANT: "model"}

# functionCallingConfig.mode. VALIDATED lets the model choose, as AUTO does (it only
# constrains how calls are decoded).
_TOOL_MODES = {
    "AUTO": ToolChoiceMode.AUTO,
    "ANY": ToolChoiceMode.ANY,
    "NONE": ToolChoiceMode.NONE,
    "VALIDATED": ToolChoiceMode.AUTO,
    "MODE_UNSPECIFIED": ToolChoiceMode.AUTO,
}
_WRITE_TOOL_MODES = {
    ToolChoiceMode.AUTO: "AUTO",
    ToolChoiceMode.ANY: "ANY",
    ToolChoiceMode.NONE: "NONE",
    ToolChoiceMode.TOOL: "ANY",  # with allowedFunctionNames [name]
}

# Candidate.finishReason → Stop. Reasons not listed (OTHER, LANGUAGE,
# MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, ...) end the turn. STOP after a
# functionCall part becomes TOOL_USE; Gemini does not say which stop sequence matched.
_STOPS = {
    "STOP": Stop.END_TURN,
    "MAX_TOKENS": Stop.MAX_TOKENS,
    "SAFETY": Stop.REFUSAL,
    "RECITATION": Stop.REFUSAL,
    "BLOCKLIST": Stop.REFUSAL,
    "PROHIBITED_CONTENT": Stop.REFUSAL,
    "SPII": Stop.REFUSAL,
    "IMAGE_SAFETY": Stop.REFUSAL,
    "IMAGE_PROHIBITED_CONTENT": Stop.REFUSAL,
    "IMAGE_RECITATION": Stop.REFUSAL,
}
_FINISH_REASONS = {
    Stop.END_TURN: "STOP",
    Stop.MAX_TOKENS: "MAX_TOKENS",
    Stop.STOP_SEQUENCE: "STOP",
    Stop.TOOL_USE: "STOP",
    Stop.REFUSAL: "SAFETY",
    Stop.PAUSE: "STOP",
}

# google.rpc status names of in-stream errors → our error kinds (cliproxy.errors).
_ERROR_TYPES = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_error",
    "UNAVAILABLE": "overloaded_error",
    "DEADLINE_EXCEEDED": "timeout_error",
}

# Keys of a function response that, alone with a string, hold a plain-text result.
_RESULT_KEYS = ("result", "output", "content")
# How a result is written: Google's documented "output" and "error" keys.
_OUTPUT_KEY = "output"
_ERROR_KEY = "error"

_CAMEL_HUMP = re.compile(r"([A-Z])")


def _snake(name: str) -> str:
    return _CAMEL_HUMP.sub(r"_\1", name).lower()


def _spellings(*names: str) -> frozenset:
    """Both spellings of camelCase field names (``maxOutputTokens``, ``max_output_tokens``)."""
    return frozenset(names) | frozenset(_snake(name) for name in names)


# Fields read, per object; anything else is dropped and logged.
_REQUEST_FIELDS = _spellings("contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model")
_GENERATION_FIELDS = _spellings(
    "maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount", "thinkingConfig"
)
_TOOL_CONFIG_FIELDS = _spellings("functionCallingConfig")
_PART_METADATA = _spellings("thought", "thoughtSignature", "partMetadata", "videoMetadata", "mediaResolution")


def _field(obj: dict, name: str):
    """``obj[name]``, or its snake_case spelling when the camelCase one is absent."""
    value = obj.get(name)
    if value is None:
        value = obj.get(_snake(name))
    return value


# -- requests: reading -------------------------------------------------------------------


def read_request(body: dict, model: Optional[str] = None, stream: Optional[bool] = None) -> Conversation:
    """A Gemini client's request body → ``Conversation`` (``model`` and ``stream`` come
    from the URL; the model is not part of a conversation). Raises ``BadRequest`` for a
    body Gemini itself would refuse where it matters (wrong types, ``candidateCount`` above
    1, unknown roles or modes)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    dropped = []  # type: List[str]
    conversation = Conversation(stream=bool(stream))
    conversation.system = _read_system(_field(body, "systemInstruction"), dropped)
    conversation.messages = _read_contents(_field(body, "contents"), dropped)
    conversation.tools = _read_tools(_field(body, "tools"), dropped)
    conversation.tool_choice = _read_tool_config(_field(body, "toolConfig"), dropped)
    _read_generation(_field(body, "generationConfig"), conversation, dropped)
    dropped.extend(key for key in body if key not in _REQUEST_FIELDS)
    log_dropped(PROTOCOL, True, dropped)
    return name_results(conversation)


def _read_system(value, dropped: List[str]) -> List[Text]:
    """``systemInstruction``: a Content (``{parts}``) or, as some clients send it, a
    string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)] if value else []
    if not isinstance(value, dict):
        raise BadRequest("systemInstruction must be an object with parts")
    texts = []  # type: List[Text]
    for part in _parts(value, "systemInstruction"):
        text = part.get("text")
        if isinstance(text, str):
            if text:
                texts.append(Text(text))
        else:
            dropped.extend("systemInstruction." + key for key in part)
    return texts


def _parts(content: dict, where: str) -> List[dict]:
    """A content's ``parts``, checked to be a list of objects (missing: none)."""
    parts = content.get("parts")
    if parts is None:
        return []
    if not isinstance(parts, list):
        raise BadRequest("%s.parts must be a list" % where)
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            raise BadRequest("%s.parts[%d] must be an object" % (where, index))
    return parts


class _CallIds:
    """Pairs results with calls the way Gemini does, by name and order: a result without
    an id answers the earliest call of its name not yet answered."""

    def __init__(self):
        self._pending = {}  # type: Dict[str, List[str]]

    def called(self, call_id: str, name: str) -> None:
        self._pending.setdefault(name, []).append(call_id)

    def answered(self, call_id: Optional[str], name: str) -> Optional[str]:
        """The id of the call a result of ``name`` (with ``call_id`` when it has one)
        answers, or None when no call is waiting for it."""
        pending = self._pending.get(name, [])
        if call_id is None:
            return pending.pop(0) if pending else None
        if call_id in pending:
            pending.remove(call_id)
        return call_id


def _read_contents(contents, dropped: List[str]) -> List[Message]:
    if not isinstance(contents, list):
        raise BadRequest("contents must be a list of Content objects")
    calls = _CallIds()
    messages = []  # type: List[Message]
    for turn, content in enumerate(contents):
        where = "contents[%d]" % turn
        if not isinstance(content, dict):
            raise BadRequest("%s must be an object" % where)
        role = _read_role(content.get("role"), where)
        parts = []  # type: List[Part]
        for index, part in enumerate(_parts(content, where)):
            read = _read_part(part, turn, index, calls, dropped)
            if read is not None:
                parts.append(read)
        if parts:
            messages.append(Message(role, parts))
    return messages


def _read_role(role, where: str) -> Role:
    """A content's role; a content without one is the user's, as Gemini reads it."""
    if role is None:
        return Role.USER
    found = _ROLES.get(role) if isinstance(role, str) else None
    if found is None:
        raise BadRequest('%s.role must be "user" or "model"' % where)
    return found


def _read_part(part: dict, turn: int, index: int, calls: _CallIds, dropped: List[str]) -> Optional[Part]:
    """One part → a neutral part, or None for an empty or unsupported one (logged)."""
    where = "contents[%d].parts[%d]" % (turn, index)
    if part.get("text") is not None:
        return _read_text(part, where)
    inline = _field(part, "inlineData")
    if inline is not None:
        return _read_blob(inline, where + ".inlineData", "data")
    file_data = _field(part, "fileData")
    if file_data is not None:
        return _read_blob(file_data, where + ".fileData", "fileUri")
    call = _field(part, "functionCall")
    if call is not None:
        return _read_call(call, "call_%d_%d" % (turn, index), calls, where)
    response = _field(part, "functionResponse")
    if response is not None:
        return _read_result(response, "call_%d_%d" % (turn, index), calls, where)
    dropped.extend("parts." + key for key in part if key not in _PART_METADATA)
    return None


def _read_text(part: dict, where: str) -> Optional[Part]:
    text = part["text"]
    if not isinstance(text, str):
        raise BadRequest("%s.text must be a string" % where)
    if part.get("thought") is True:
        signature = _field(part, "thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        return Thinking(text, signature) if text or signature else None
    return Text(text) if text else None


def _read_blob(blob, where: str, key: str) -> Media:
    """``inlineData`` {mimeType, data} or ``fileData`` {mimeType, fileUri} → Media."""
    if not isinstance(blob, dict):
        raise BadRequest("%s must be an object" % where)
    value = _field(blob, key)
    if not isinstance(value, str) or not value:
        raise BadRequest("%s.%s must be a non-empty string" % (where, key))
    media_type = _field(blob, "mimeType")
    media_type = media_type if isinstance(media_type, str) and media_type else None
    if key == "data":
        return Media(media_type, data=value)
    return Media(media_type, url=value)


def _read_call(call, default_id: str, calls: _CallIds, where: str) -> ToolCall:
    if not isinstance(call, dict):
        raise BadRequest("%s.functionCall must be an object" % where)
    name = call.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("%s.functionCall.name must be a non-empty string" % where)
    args = call.get("args")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        raise BadRequest("%s.functionCall.args must be an object" % where)
    call_id = call.get("id")
    call_id = call_id if isinstance(call_id, str) and call_id else default_id
    calls.called(call_id, name)
    return ToolCall(call_id, name, args)


def _read_result(response, default_id: str, calls: _CallIds, where: str) -> ToolResult:
    if not isinstance(response, dict):
        raise BadRequest("%s.functionResponse must be an object" % where)
    name = response.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("%s.functionResponse.name must be a non-empty string" % where)
    call_id = response.get("id")
    call_id = calls.answered(call_id if isinstance(call_id, str) and call_id else None, name)
    content, is_error = _result_content(response.get("response"))
    for part in response.get("parts") if isinstance(response.get("parts"), list) else ():
        # Multimodal function responses carry their files as parts of their own.
        blob = _field(part, "inlineData") if isinstance(part, dict) else None
        if isinstance(blob, dict) and isinstance(_field(blob, "data"), str):
            content.append(_read_blob(blob, where + ".functionResponse.parts", "data"))
    return ToolResult(call_id or default_id, content, is_error, name)


def _result_content(response) -> Tuple[List, bool]:
    """A function response's object → (content, is_error): ``{"error": …}`` alone is an
    error, ``{"result"|"output"|"content": string}`` alone that string, any other value
    its JSON text."""
    if response is None or response == {}:
        return [], False
    if isinstance(response, str):
        return [Text(response)], False
    if isinstance(response, dict) and len(response) == 1:
        key, value = next(iter(response.items()))
        if key == _ERROR_KEY:
            return [Text(value if isinstance(value, str) else dumps(value))], True
        if key in _RESULT_KEYS and isinstance(value, str):
            return [Text(value)], False
    return [Text(dumps(response))], False


def _read_tools(tools, dropped: List[str]) -> List[Tool]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    result = []  # type: List[Tool]
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise BadRequest("tools[%d] must be an object" % index)
        for key, value in tool.items():
            if key in ("functionDeclarations", "function_declarations"):
                if not isinstance(value, list):
                    raise BadRequest("tools[%d].functionDeclarations must be a list" % index)
                result.extend(_read_declaration(item, index) for item in value)
            else:
                dropped.append("tools." + key)  # googleSearch, codeExecution, urlContext...
    return result


def _read_declaration(declaration, index: int) -> Tool:
    if not isinstance(declaration, dict):
        raise BadRequest("tools[%d].functionDeclarations must hold objects" % index)
    name = declaration.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("tools[%d]: every function declaration needs a name" % index)
    description = declaration.get("description")
    tool = Tool(name, description if isinstance(description, str) else None)
    parameters = declaration.get("parameters")
    json_schema = _field(declaration, "parametersJsonSchema")
    if isinstance(parameters, dict):
        tool.schema = from_gemini(parameters)
    elif isinstance(json_schema, dict):
        tool.schema = json_schema
    return tool


def _read_tool_config(config, dropped: List[str]) -> Optional[ToolChoice]:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise BadRequest("toolConfig must be an object")
    dropped.extend("toolConfig." + key for key in config if key not in _TOOL_CONFIG_FIELDS)
    calling = _field(config, "functionCallingConfig")
    if calling is None:
        return None
    if not isinstance(calling, dict):
        raise BadRequest("toolConfig.functionCallingConfig must be an object")
    mode = calling.get("mode", "AUTO")
    choice = _TOOL_MODES.get(mode.upper()) if isinstance(mode, str) else None
    if choice is None:
        raise BadRequest("toolConfig.functionCallingConfig.mode must be AUTO, ANY, NONE or VALIDATED")
    names = _field(calling, "allowedFunctionNames")
    if names is not None:
        if choice is ToolChoiceMode.ANY and isinstance(names, list) and len(names) == 1 and isinstance(names[0], str):
            return ToolChoice(ToolChoiceMode.TOOL, names[0])
        dropped.append("toolConfig.functionCallingConfig.allowedFunctionNames")
    return ToolChoice(choice)


def _read_generation(config, conversation: Conversation, dropped: List[str]) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise BadRequest("generationConfig must be an object")
    count = _integer(config, "candidateCount")
    if count is not None and count > 1:
        raise BadRequest("generationConfig.candidateCount above 1 is not supported for this model")
    conversation.max_output_tokens = _integer(config, "maxOutputTokens")
    conversation.temperature = _number(config, "temperature")
    conversation.top_p = _number(config, "topP")
    conversation.top_k = _integer(config, "topK")
    stop = _field(config, "stopSequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
            raise BadRequest("generationConfig.stopSequences must be a list of strings")
        conversation.stop = list(stop)
    thinking = _field(config, "thinkingConfig")
    if thinking is not None:
        conversation.thinking = _read_thinking(thinking)
    dropped.extend("generationConfig." + key for key in config if key not in _GENERATION_FIELDS)


def _number(config: dict, name: str) -> Optional[float]:
    value = _field(config, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest("generationConfig.%s must be a number" % name)
    return value


def _integer(config: dict, name: str, where: str = "generationConfig") -> Optional[int]:
    value = _field(config, name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("%s.%s must be an integer" % (where, name))
    return value


def _read_thinking(config) -> Optional[ThinkingSuffix]:
    """``thinkingConfig`` → the request's reasoning setting: ``thinkingBudget`` -1 is
    dynamic (AUTO), 0 off (NONE), more a budget; ``thinkingLevel`` a level;
    ``includeThoughts`` alone asks for thinking the provider sizes (AUTO)."""
    where = "generationConfig.thinkingConfig"
    if not isinstance(config, dict):
        raise BadRequest("%s must be an object" % where)
    budget = _integer(config, "thinkingBudget", where)
    level = _field(config, "thinkingLevel")
    if budget is not None and level is not None:
        raise BadRequest("%s: thinkingBudget and thinkingLevel cannot be used together" % where)
    if budget is not None:
        if budget == -1:
            return ThinkingSuffix(ThinkingKind.AUTO)
        if budget == 0:
            return ThinkingSuffix(ThinkingKind.NONE)
        if budget < 0:
            raise BadRequest("%s.thinkingBudget must be -1, 0 or a positive number of tokens" % where)
        return ThinkingSuffix(ThinkingKind.BUDGET, budget=budget)
    if level is not None:
        lowered = level.lower() if isinstance(level, str) else None
        if lowered in LEVELS:
            return ThinkingSuffix(ThinkingKind.LEVEL, level=lowered)
        if lowered != "thinking_level_unspecified":
            raise BadRequest("%s.thinkingLevel must be one of %s" % (where, ", ".join(LEVELS)))
    if _field(config, "includeThoughts") is True:
        return ThinkingSuffix(ThinkingKind.AUTO)
    return None


# -- requests: writing -------------------------------------------------------------------


def write_request(conversation: Conversation, model: str) -> dict:
    """``conversation`` → a generateContent body for upstream ``model`` (which goes in
    the URL, as does the choice of streaming). System messages inside the conversation
    are appended to ``systemInstruction`` (Gemini has no system turn); thinking parts
    are left out (their signatures are another protocol's, or Gemini's from a context
    the proxy cannot vouch for)."""
    dropped = []  # type: List[str]
    system = [part.text for part in conversation.system if part.text]
    contents = []  # type: List[dict]
    for message in conversation.messages:
        if message.role is Role.SYSTEM:
            system.extend(part.text for part in message.parts if isinstance(part, Text) and part.text)
            continue
        parts = _write_parts(message.parts, dropped)
        if not parts:
            continue
        role = _WRITE_ROLES[message.role]
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)  # Gemini wants turns to alternate
        else:
            contents.append({"role": role, "parts": parts})
    body = {"contents": contents}  # type: Dict[str, object]
    if system:
        body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    if conversation.tools:
        body["tools"] = [{"functionDeclarations": [_write_tool(tool) for tool in conversation.tools]}]
        if conversation.tool_choice is not None:
            body["toolConfig"] = _write_tool_choice(conversation.tool_choice)
    generation = _write_generation(conversation)
    if generation:
        body["generationConfig"] = generation
    if conversation.thinking is not None:
        apply_suffix(PROTOCOL, body, conversation.thinking, model)
        if _thinking_on(conversation.thinking):
            body["generationConfig"]["thinkingConfig"]["includeThoughts"] = True
    if conversation.parallel_tool_calls is not None:
        dropped.append("parallel_tool_calls")
    if conversation.user is not None:
        dropped.append("user")
    log_dropped(PROTOCOL, False, dropped)
    return body


def _write_parts(parts: List[Part], dropped: List[str]) -> List[dict]:
    written = []  # type: List[dict]
    for part in parts:
        if isinstance(part, Text):
            if part.text:
                written.append({"text": part.text})
        elif isinstance(part, Media):
            written.append(_write_media(part, dropped))
        elif isinstance(part, ToolCall):
            written.append(_write_call(part))
        elif isinstance(part, ToolResult):
            written.append(_write_result(part))
            # Files a tool returned follow its response as parts of the same turn, which
            # every Gemini model accepts (function response parts are Gemini 3 only).
            written.extend(_write_media(item, dropped) for item in part.content if isinstance(item, Media))
        elif isinstance(part, Thinking):
            dropped.append("thinking")
    return written


def _write_media(media: Media, dropped: List[str]) -> dict:
    if media.filename is not None:
        dropped.append("filename")
    if media.data is not None:
        return {"inlineData": {"mimeType": media.media_type or "application/octet-stream", "data": media.data}}
    parsed = parse_data_url(media.url or "")
    if parsed is not None:
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    file_data = {"mimeType": media.media_type} if media.media_type else {}
    file_data["fileUri"] = media.url or ""
    return {"fileData": file_data}


def _write_call(call: ToolCall) -> dict:
    function_call = _function_call(call.id, call.name, call.arguments)
    return {"functionCall": function_call, "thoughtSignature": SIGNATURE_PLACEHOLDER}


def _write_result(result: ToolResult) -> dict:
    """A result as a functionResponse: its text under ``output``, or ``error`` for a
    failed call (Google's documented keys); the name is the called tool's, which
    ``name_results`` found (the call id stands in when no call had that id)."""
    text = "\n".join(part.text for part in result.content if isinstance(part, Text))
    response = {_ERROR_KEY if result.is_error else _OUTPUT_KEY: text}
    function_response = {"id": result.call_id, "name": result.name or result.call_id, "response": response}
    return {"functionResponse": function_response}


def _write_tool(tool: Tool) -> dict:
    declaration = {"name": tool.name}  # type: Dict[str, object]
    if tool.description:
        declaration["description"] = tool.description
    parameters = to_gemini(tool.schema)
    # Gemini refuses an OBJECT without properties: a tool taking nothing has no schema.
    if parameters.get("properties"):
        parameters.setdefault("type", "object")
        declaration["parameters"] = parameters
    return declaration


def _write_tool_choice(choice: ToolChoice) -> dict:
    calling = {"mode": _WRITE_TOOL_MODES[choice.mode]}  # type: Dict[str, object]
    if choice.mode is ToolChoiceMode.TOOL and choice.name:
        calling["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": calling}


def _write_generation(conversation: Conversation) -> dict:
    config = {}  # type: Dict[str, object]
    if conversation.max_output_tokens is not None:
        config["maxOutputTokens"] = conversation.max_output_tokens
    if conversation.temperature is not None:
        config["temperature"] = conversation.temperature
    if conversation.top_p is not None:
        config["topP"] = conversation.top_p
    if conversation.top_k is not None:
        config["topK"] = conversation.top_k
    if conversation.stop:
        config["stopSequences"] = list(conversation.stop)
    return config


def _thinking_on(thinking: ThinkingSuffix) -> bool:
    if thinking.kind is ThinkingKind.NONE:
        return False
    return not (thinking.kind is ThinkingKind.BUDGET and not thinking.budget)


# -- answers: reading --------------------------------------------------------------------


def read_response(document: dict) -> Answer:
    """A generateContent answer → ``Answer``. Raises ``UpstreamError`` for a document that
    is not one (an error object, no candidates and no ``promptFeedback`` block)."""
    if not isinstance(document, dict):
        raise UpstreamError("the Gemini answer is not a JSON object")
    if "error" in document:
        raise UpstreamError("Gemini answered with an error: %s" % _error_message(document["error"]))
    candidates = document.get("candidates")
    if not (isinstance(candidates, list) and candidates) and _block_reason(document) is None:
        raise UpstreamError("the Gemini answer has no candidates")
    builder = AnswerBuilder()
    reader = StreamReader(builder)
    reader._chunk(document)
    reader._finish_whole()
    return builder.answer


def _block_reason(document: dict) -> Optional[str]:
    feedback = document.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    return reason if isinstance(reason, str) and reason else None


def _error_message(error) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return error if isinstance(error, str) else "unknown error"


def _count(metadata: dict, name: str) -> Optional[int]:
    value = metadata.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_usage(metadata) -> Usage:
    """A ``usageMetadata`` object → Usage (empty for anything that is not an object)."""
    return _read_usage(metadata) if isinstance(metadata, dict) else Usage()


def _read_usage(metadata: dict) -> Usage:
    """``usageMetadata`` → Usage: output is candidates + thoughts (reasoning)."""
    candidates = _count(metadata, "candidatesTokenCount")
    thoughts = _count(metadata, "thoughtsTokenCount")
    output = None
    if candidates is not None or thoughts is not None:
        output = (candidates or 0) + (thoughts or 0)
    return Usage(
        input_tokens=_count(metadata, "promptTokenCount"),
        output_tokens=output,
        cache_read=_count(metadata, "cachedContentTokenCount"),
        reasoning=thoughts,
    )


class StreamReader(EventReader):
    """A Gemini ``alt=sse`` stream → the events of ``sink`` (see the module docstring).

    Block rules: consecutive text parts are one text block, consecutive thought parts one
    thinking block (a part's ``thoughtSignature`` its signature), each ``functionCall`` a
    tool-call block of its own with its ``args`` as one fragment. A call without an id
    gets ``call_<responseId>_<n>``, unique across the turns of a conversation. Parts of
    other kinds (inline images, executable code) and signatures on non-thought parts have
    no place in a neutral answer and are skipped.
    """

    __slots__ = ("_sink", "_started", "_index", "_open", "_calls", "_response_id", "_stop", "_done")

    def __init__(self, sink: AnswerSink):
        self._sink = sink
        self._started = False
        self._index = -1  # index of the last block started
        self._open = None  # type: Optional[BlockKind]  # kind of the block in progress
        self._calls = 0
        self._response_id = ""
        self._stop = None  # type: Optional[Stop]  # set once the answer is complete
        self._done = False  # ended, or failed

    def feed(self, event: Event) -> None:
        """One SSE event; raises ``UpstreamError`` when its data is not JSON."""
        data = event.data
        if data is None or self._done:
            return
        try:
            document = loads(data)
        except ValueError:
            raise UpstreamError("a Gemini stream event is not valid JSON")
        if isinstance(document, dict):
            self._chunk(document)

    def close(self) -> None:
        """The stream's end: ends the answer, or raises ``UpstreamError`` when no chunk
        said it was complete (and no error arrived)."""
        if self._done:
            return
        if self._stop is None:
            raise UpstreamError("the Gemini stream ended before a finishReason")
        self._end()

    def _chunk(self, document: dict) -> None:
        """One ``GenerateContentResponse`` (a stream chunk or a whole answer)."""
        if self._done:
            return
        if "error" in document:
            self._fail(document["error"])
            return
        if not self._started:
            self._start(document)
        candidates = document.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates else None
        if isinstance(candidate, dict):
            self._candidate(candidate)
        elif _block_reason(document) is not None:
            self._stop = Stop.REFUSAL  # the prompt itself was blocked: no candidate
        metadata = document.get("usageMetadata")
        if isinstance(metadata, dict):
            self._sink.usage(_read_usage(metadata))

    def _finish_whole(self) -> None:
        """End a whole answer, complete whether or not it named a finishReason."""
        if self._stop is None:
            self._stop = Stop.END_TURN
        self.close()

    def _start(self, document: dict) -> None:
        self._started = True
        response_id = document.get("responseId")
        model = document.get("modelVersion")
        self._response_id = response_id if isinstance(response_id, str) else ""
        self._sink.start(self._response_id or None, model if isinstance(model, str) else None)

    def _candidate(self, candidate: dict) -> None:
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, dict):
                    self._part(part)
        reason = candidate.get("finishReason")
        if isinstance(reason, str):
            self._stop = _STOPS.get(reason, Stop.END_TURN)

    def _part(self, part: dict) -> None:
        text = part.get("text")
        if isinstance(text, str):
            if part.get("thought") is True:
                self._thought(text, part.get("thoughtSignature"))
            elif text:
                if self._open is not BlockKind.TEXT:
                    self._begin(BlockKind.TEXT)
                self._sink.text(self._index, text)
            return
        call = part.get("functionCall")
        if isinstance(call, dict):
            self._call(call)

    def _thought(self, text: str, signature) -> None:
        signature = signature if isinstance(signature, str) and signature else None
        if self._open is not BlockKind.THINKING:
            if not text and signature is None:
                return
            self._begin(BlockKind.THINKING)
        if text:
            self._sink.thinking(self._index, text)
        if signature is not None:
            self._sink.signature(self._index, signature)

    def _call(self, call: dict) -> None:
        name = call.get("name")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = "call_%s_%d" % (self._response_id, self._calls) if self._response_id else "call_%d" % self._calls
        args = call.get("args")
        self._begin(BlockKind.TOOL_CALL, call_id, name if isinstance(name, str) else "")
        self._sink.arguments(self._index, dumps(args if isinstance(args, dict) else {}))
        self._sink.block_stop(self._index)
        self._open = None
        self._calls += 1

    def _begin(self, kind: BlockKind, call_id: Optional[str] = None, name: Optional[str] = None) -> None:
        """Stop the open block and start one of ``kind``."""
        if self._open is not None:
            self._sink.block_stop(self._index)
        self._index += 1
        self._open = kind
        self._sink.block_start(self._index, kind, call_id, name)

    def _end(self) -> None:
        self._done = True
        if self._open is not None:
            self._sink.block_stop(self._index)
            self._open = None
        stop = self._stop
        if stop is Stop.END_TURN and self._calls:
            stop = Stop.TOOL_USE
        self._sink.finish(stop)
        self._sink.end()

    def _fail(self, error) -> None:
        self._done = True
        status = error.get("code") if isinstance(error, dict) else None
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            status = 502
        name = error.get("status") if isinstance(error, dict) else None
        kind = _ERROR_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            kind = "api_error" if status >= 500 else "invalid_request_error"
        self._sink.error(ProxyError(_error_message(error), status=status, error_type=kind))


# -- answers: writing --------------------------------------------------------------------


def write_response(answer: Answer, ctx: AnswerContext) -> dict:
    """``answer`` → a generateContent answer for a Gemini client, under
    ``ctx.requested_model``. A candidate without parts (a blocked answer) has no
    ``content``, as Gemini sends it."""
    parts = []  # type: List[dict]
    for part in answer.parts:
        if isinstance(part, Text):
            parts.append({"text": part.text})
        elif isinstance(part, Thinking):
            if part.text or part.signature:
                parts.append(_thought_part(part.text, part.signature))
        elif isinstance(part, ToolCall):
            parts.append({"functionCall": _function_call(part.id, part.name, part.arguments)})
    candidate = {}  # type: Dict[str, object]
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    candidate["finishReason"] = _FINISH_REASONS[answer.stop]
    candidate["index"] = 0
    document = {"candidates": [candidate]}  # type: Dict[str, object]
    metadata = _usage_metadata(answer.usage)
    if metadata:
        document["usageMetadata"] = metadata
    document["modelVersion"] = ctx.requested_model
    document["responseId"] = answer.id or ctx.new_id("")
    return document


def _thought_part(text: str, signature: Optional[str]) -> dict:
    part = {"text": text, "thought": True}  # type: Dict[str, object]
    if signature:
        part["thoughtSignature"] = signature
    return part


def _function_call(call_id: Optional[str], name: str, arguments: dict) -> dict:
    if call_id:
        return {"id": call_id, "name": name, "args": arguments}
    return {"name": name, "args": arguments}


def _usage_metadata(usage: Usage) -> dict:
    """Usage → ``usageMetadata``: candidates are the output without its reasoning."""
    metadata = {}  # type: Dict[str, int]
    if usage.input_tokens is not None:
        metadata["promptTokenCount"] = usage.input_tokens
    if usage.output_tokens is not None:
        metadata["candidatesTokenCount"] = max(usage.output_tokens - (usage.reasoning or 0), 0)
    if usage.input_tokens is not None and usage.output_tokens is not None:
        metadata["totalTokenCount"] = usage.input_tokens + usage.output_tokens
    if usage.cache_read is not None:
        metadata["cachedContentTokenCount"] = usage.cache_read
    if usage.reasoning is not None:
        metadata["thoughtsTokenCount"] = usage.reasoning
    return metadata


# A chunk is ``_PARTS_OPEN`` + one part + the stream's ``_tail`` (which names the model
# and response id, fixed once the stream starts); a text part is ``_TEXT_OPEN`` + the
# encoded text + ``}`` (``,"thought":true}`` for a thought).
_PARTS_OPEN = b'{"candidates":[{"content":{"parts":['
_TEXT_OPEN = _PARTS_OPEN + b'{"text":'
_SSE_DATA = b"data: "
_SSE_END = b"\r\n\r\n"  # the API ends its alt=sse events with CRLF CRLF
_ARRAY_OPEN = b"["
_ARRAY_NEXT = b"\n,\r\n"  # between the objects of the API's streamed JSON array
_ARRAY_CLOSE = b"\n]"


class StreamWriter(AnswerSink):
    """The events of an answer → a Gemini client's stream: SSE (``ctx.gemini_sse``) or
    the JSON array ``streamGenerateContent`` sends without ``alt=sse``. ``take()`` gives
    the bytes written since the last call. An error ends the stream: its event (SSE), or
    its error object as the array's last element, and nothing after it."""

    def __init__(self, ctx: AnswerContext):
        self._ctx = ctx
        self._out = []  # type: List[bytes]
        sse = ctx.gemini_sse
        self._sse = sse
        self._separator = _SSE_DATA if sse else _ARRAY_OPEN  # written before the next chunk
        self._next_separator = _SSE_DATA if sse else _ARRAY_NEXT
        self._terminator = _SSE_END if sse else b""  # written after each chunk
        self._response_id = None  # type: Optional[str]
        self._text_end = b""  # set by _begin with the stream's model and id
        self._thought_end = b""
        self._part_end = b""
        self._calls = {}  # type: Dict[int, Tuple[Optional[str], str, List[str]]]
        # Every usage event merged: what the client's closing events report, and what
        # usage accounting reads after the stream.
        self.counted = Usage()
        self._stop = Stop.END_TURN
        self._closed = False  # ended, or failed

    def take(self) -> bytes:
        data = b"".join(self._out)
        self._out = []
        return data

    def start(self, id, model):
        if self._response_id is None:
            self._begin(id)

    def block_start(self, index, kind, id=None, name=None):
        if kind is BlockKind.TOOL_CALL:
            self._calls[index] = (id, name or "", [])

    def text(self, index, text):
        self._delta(text, False)

    def thinking(self, index, text):
        self._delta(text, True)

    def _delta(self, text, thought):
        """One chunk with one text part, a thought part when ``thought``."""
        if self._closed or not text:
            return
        if self._response_id is None:
            self._begin(None)  # which also makes the chunk ends
        end = self._thought_end if thought else self._text_end
        self._out += (self._separator, _TEXT_OPEN, json_string(text).encode("utf-8"), end)
        self._separator = self._next_separator

    def signature(self, index, value):
        self._part(_thought_part("", value))

    def arguments(self, index, fragment):
        call = self._calls.get(index)
        if call is not None:
            call[2].append(fragment)

    def block_stop(self, index):
        call = self._calls.pop(index, None)
        if call is not None:
            call_id, name, fragments = call
            self._part({"functionCall": _function_call(call_id, name, parse_arguments("".join(fragments)))})

    def usage(self, usage):
        self.counted.merge(usage)

    def finish(self, stop, stop_sequence=None):
        self._stop = stop

    def end(self):
        """The last chunk: finish reason and usage (Gemini clients read both there)."""
        if self._closed:
            return
        if self._response_id is None:
            self._begin(None)
        self._closed = True
        candidate = {
            "content": {"parts": [{"text": ""}], "role": "model"},
            "finishReason": _FINISH_REASONS[self._stop],
            "index": 0,
        }
        document = {"candidates": [candidate]}  # type: Dict[str, object]
        metadata = _usage_metadata(self.counted)
        if metadata:
            document["usageMetadata"] = metadata
        document["modelVersion"] = self._ctx.requested_model
        document["responseId"] = self._response_id
        self._out += (self._separator, dumps(document).encode("utf-8"), self._terminator)
        if not self._sse:
            self._out.append(_ARRAY_CLOSE)

    def error(self, error):
        if self._closed:
            return
        self._closed = True
        if self._sse:
            self._out.append(error_event(PROTOCOL, error))
        else:
            self._out += (self._separator, dumps(error_body(PROTOCOL, error)).encode("utf-8"), _ARRAY_CLOSE)

    def _begin(self, response_id: Optional[str]) -> None:
        """Fix the response id (the provider's, else a new one) and the chunk endings."""
        self._response_id = response_id or self._ctx.new_id("")
        tail = '],"role":"model"},"index":0}],"modelVersion":%s,"responseId":%s}' % (
            encode_json_value(self._ctx.requested_model),
            encode_json_value(self._response_id),
        )
        tail_bytes = tail.encode("utf-8") + self._terminator
        self._part_end = tail_bytes
        self._text_end = b"}" + tail_bytes
        self._thought_end = b',"thought":true}' + tail_bytes

    def _part(self, part: dict) -> None:
        """One chunk holding ``part`` (calls and signatures: rare, so built as a dict)."""
        if self._closed:
            return
        if self._response_id is None:
            self._begin(None)
        self._out += (self._separator, _PARTS_OPEN, dumps(part).encode("utf-8"), self._part_end)
        self._separator = self._next_separator
