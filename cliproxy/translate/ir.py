"""The neutral model every protocol translates through: a conversation, an answer, and the
events of an answer as it streams.

Strategy: four wire protocols (Anthropic Messages, OpenAI Chat Completions, OpenAI
Responses, Gemini generateContent) meet here, so each needs one reader and one writer per
shape instead of a converter per pair (``translate/codecs/``). Everything in this module is
plain data and small state machines; nothing does I/O.

Requests: a codec's ``read_request`` turns a client body into a ``Conversation``; another
codec's ``write_request`` turns it into a provider body.

Answers: a streamed answer is a sequence of calls on an ``AnswerSink`` (the events):

    start(id, model)
    block_start(index, kind, id=None, name=None)    kind: BlockKind; id/name for tool calls
      text(index, text) | thinking(index, text) | signature(index, value)
      | arguments(index, json_fragment)
    block_stop(index)
    ... more blocks ...
    usage(usage)                     any time, any number of times: known fields replace
    finish(stop, stop_sequence=None)
    end()                            the answer is complete (nothing follows)
    error(error)                     instead of finish/end: the provider failed mid-way

Block indexes count 0, 1, 2 ... in order of ``block_start``; blocks never overlap (a
reader whose protocol interleaves them holds the later block back until the earlier one
stops). A stream reader (``codec.StreamReader(sink)``) calls these methods as provider
events arrive; a stream writer (``codec.StreamWriter(ctx)``) is a sink that turns them
into client bytes. A whole answer is the same events collected by ``AnswerBuilder`` into
an ``Answer``, and ``replay`` plays an ``Answer`` back into any sink, so one writer serves
both a streamed and a whole answer.
"""

import enum
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Union

from cliproxy.jsontext import loads
from cliproxy.routing.suffix import ThinkingSuffix
from cliproxy.translate.context import RewriteContext

__all__ = [
    "Answer",
    "AnswerBuilder",
    "AnswerContext",
    "AnswerSink",
    "BlockKind",
    "Conversation",
    "Media",
    "Message",
    "Part",
    "Role",
    "Stop",
    "Text",
    "Thinking",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceMode",
    "ToolResult",
    "Usage",
    "name_results",
    "parse_arguments",
    "replay",
]


# -- conversation parts ------------------------------------------------------------------


@dataclass
class Text:
    text: str


@dataclass
class Media:
    """An image or a document: inline base64 ``data`` or a ``url`` (one of them).
    ``media_type`` is the MIME type (``image/png``, ``application/pdf``), None when a URL
    does not say."""

    media_type: Optional[str] = None
    data: Optional[str] = None
    url: Optional[str] = None
    filename: Optional[str] = None


@dataclass
class ToolCall:
    """The model asked for a tool. ``arguments`` is the parsed JSON object."""

    id: str
    name: str
    arguments: dict = field(default_factory=dict)


@dataclass
class ToolResult:
    """What a tool gave back for the call ``call_id``. ``name`` is the called tool's
    name when the reader knows it (Gemini needs it and has no ids)."""

    call_id: str
    content: List[Union[Text, Media]] = field(default_factory=list)
    is_error: bool = False
    name: Optional[str] = None


@dataclass
class Thinking:
    """Reasoning text; ``signature`` is the protocol's opaque proof (Anthropic's
    ``signature``, Responses' ``encrypted_content``), meaningful only to the protocol it
    came from. ``redacted``: Anthropic's ``redacted_thinking`` data (no text)."""

    text: str = ""
    signature: Optional[str] = None
    redacted: Optional[str] = None


Part = Union[Text, Media, ToolCall, ToolResult, Thinking]


class Role(enum.Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"  # a system/developer message inside the conversation, in order


@dataclass
class Message:
    role: Role
    parts: List[Part] = field(default_factory=list)


@dataclass
class Tool:
    name: str
    description: Optional[str] = None
    schema: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolChoiceMode(enum.Enum):
    AUTO = "auto"  # the model decides
    ANY = "any"  # some tool must be called (OpenAI "required", Gemini ANY)
    NONE = "none"  # no tool may be called
    TOOL = "tool"  # the tool ``ToolChoice.name`` must be called


@dataclass
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: Optional[str] = None


@dataclass
class Conversation:
    """A model request in no protocol's shape.

    ``system``: the leading instructions (Anthropic ``system``, leading Chat
    system/developer messages, Responses ``instructions``, Gemini ``systemInstruction``);
    system messages later in the conversation stay in ``messages`` with ``Role.SYSTEM``.
    Tool results are parts of ``Role.USER`` messages, as in Anthropic's shape.
    ``thinking`` is the request's own reasoning setting in the suffix table's terms
    (``routing.suffix.ThinkingSuffix``); a model-name suffix is applied after it and wins.
    ``parallel_tool_calls`` is None when the client did not say.
    """

    system: List[Text] = field(default_factory=list)
    messages: List[Message] = field(default_factory=list)
    tools: List[Tool] = field(default_factory=list)
    tool_choice: Optional[ToolChoice] = None
    parallel_tool_calls: Optional[bool] = None
    max_output_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    stop: List[str] = field(default_factory=list)
    thinking: Optional[ThinkingSuffix] = None
    stream: bool = False
    user: Optional[str] = None


# -- answers -----------------------------------------------------------------------------


class Stop(enum.Enum):
    """Why an answer ended."""

    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_USE = "tool_use"
    REFUSAL = "refusal"  # a safety or content filter stopped it
    PAUSE = "pause_turn"  # Anthropic: a long server-side turn paused


class BlockKind(enum.Enum):
    TEXT = "text"
    THINKING = "thinking"
    TOOL_CALL = "tool_call"


@dataclass
class Usage:
    """Token counts; None where the provider did not say. ``input_tokens`` counts the
    whole prompt, cached parts included (OpenAI's and Gemini's sense; Anthropic's
    ``input_tokens`` is the uncached rest); ``output_tokens`` includes ``reasoning``."""

    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    cache_read: Optional[int] = None
    cache_write: Optional[int] = None
    reasoning: Optional[int] = None

    def merge(self, other: "Usage") -> None:
        """Take every field ``other`` knows, in place (stream usage is cumulative)."""
        for name in ("input_tokens", "output_tokens", "cache_read", "cache_write", "reasoning"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)


@dataclass
class Answer:
    """A whole answer: ``parts`` are ``Text``, ``Thinking`` and ``ToolCall`` in order."""

    id: Optional[str] = None
    model: Optional[str] = None
    parts: List[Part] = field(default_factory=list)
    stop: Stop = Stop.END_TURN
    stop_sequence: Optional[str] = None
    usage: Usage = field(default_factory=Usage)


class AnswerSink:
    """The events of an answer (see the module docstring). Every method does nothing
    here, so a sink overrides only what it uses."""

    def start(self, id: Optional[str], model: Optional[str]) -> None:
        pass

    def block_start(self, index: int, kind: BlockKind, id: Optional[str] = None, name: Optional[str] = None) -> None:
        pass

    def text(self, index: int, text: str) -> None:
        pass

    def thinking(self, index: int, text: str) -> None:
        pass

    def deltas(self, index: int, kind: BlockKind, pieces: List[str]) -> None:
        """``text``, ``thinking`` or ``arguments`` (``kind`` TEXT, THINKING or TOOL_CALL)
        for each piece in order: a run of deltas a reader read together, which a writer
        may emit in one step."""
        if kind is BlockKind.TEXT:
            emit = self.text
        elif kind is BlockKind.THINKING:
            emit = self.thinking
        else:
            emit = self.arguments
        for piece in pieces:
            emit(index, piece)

    def signature(self, index: int, value: str) -> None:
        pass

    def arguments(self, index: int, fragment: str) -> None:
        pass

    def block_stop(self, index: int) -> None:
        pass

    def usage(self, usage: Usage) -> None:
        pass

    def finish(self, stop: Stop, stop_sequence: Optional[str] = None) -> None:
        pass

    def end(self) -> None:
        pass

    def error(self, error) -> None:
        """``error``: a ``cliproxy.errors.ProxyError`` describing the provider's failure."""


def name_results(conversation: Conversation) -> Conversation:
    """Give every ``ToolResult`` without a ``name`` the name of the ``ToolCall`` with its
    id, when an earlier message has one; in place, returns ``conversation``. Readers call
    it last, so writers that need names (Gemini) find them whatever the client spoke."""
    names = {}  # type: Dict[str, str]
    for message in conversation.messages:
        for part in message.parts:
            if isinstance(part, ToolCall):
                names[part.id] = part.name
            elif isinstance(part, ToolResult) and part.name is None:
                part.name = names.get(part.call_id)
    return conversation


def parse_arguments(text: str) -> dict:
    """Tool-call arguments as a JSON object: ``{}`` for empty text, and for text that is
    not a JSON object (a model that wrote broken JSON) ``{"arguments": text}``, so
    nothing the model wrote is lost and the target still gets an object."""
    if not text.strip():
        return {}
    try:
        value = loads(text)
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


class AnswerBuilder(AnswerSink):
    """A sink that collects the events into ``answer``; ``error`` is kept in ``failure``
    (the answer is then incomplete)."""

    def __init__(self):
        self.answer = Answer()
        self.failure = None
        self.ended = False
        self._fragments = {}  # type: Dict[int, List[str]]
        self._blocks = {}  # type: Dict[int, Part]

    def start(self, id, model):
        self.answer.id = id
        self.answer.model = model

    def block_start(self, index, kind, id=None, name=None):
        if kind is BlockKind.TEXT:
            part = Text("")
        elif kind is BlockKind.THINKING:
            part = Thinking("")
        else:
            part = ToolCall(id or "", name or "")
            self._fragments[index] = []
        self._blocks[index] = part
        self.answer.parts.append(part)

    def text(self, index, text):
        self._blocks[index].text += text

    def thinking(self, index, text):
        self._blocks[index].text += text

    def signature(self, index, value):
        part = self._blocks[index]
        part.signature = (part.signature or "") + value

    def arguments(self, index, fragment):
        self._fragments[index].append(fragment)

    def block_stop(self, index):
        fragments = self._fragments.pop(index, None)
        if fragments is not None:
            self._blocks[index].arguments = parse_arguments("".join(fragments))

    def usage(self, usage):
        self.answer.usage.merge(usage)

    def finish(self, stop, stop_sequence=None):
        self.answer.stop = stop
        self.answer.stop_sequence = stop_sequence

    def end(self):
        self.ended = True

    def error(self, error):
        self.failure = error


def replay(answer: Answer, sink: AnswerSink, dumps: Callable[[object], str]) -> None:
    """Play ``answer`` into ``sink`` as the events of a stream would (``dumps`` encodes
    tool arguments), ending with ``finish`` and ``end``."""
    sink.start(answer.id, answer.model)
    sink.usage(answer.usage)
    for index, part in enumerate(answer.parts):
        if isinstance(part, Text):
            sink.block_start(index, BlockKind.TEXT)
            if part.text:
                sink.text(index, part.text)
        elif isinstance(part, Thinking):
            sink.block_start(index, BlockKind.THINKING)
            if part.text:
                sink.thinking(index, part.text)
            if part.signature:
                sink.signature(index, part.signature)
        elif isinstance(part, ToolCall):
            sink.block_start(index, BlockKind.TOOL_CALL, part.id, part.name)
            sink.arguments(index, dumps(part.arguments))
        else:
            continue
        sink.block_stop(index)
    sink.finish(answer.stop, answer.stop_sequence)
    sink.end()


# -- what answer writers need ------------------------------------------------------------


class AnswerContext(RewriteContext):
    """What a codec's answer writers (``write_response``, ``StreamWriter``) need beyond
    the events: the model name to answer under, the clock for ``created`` fields, new ids
    and the client's options.

    ``requested_model``: the model string exactly as the client sent it (suffix kept).
    ``tool_names``: a function of no arguments giving lowercase tool name → the casing
    the client declared, called on first use (Anthropic clients; ``RewriteContext``'s
    lazy map). ``include_usage``: an OpenAI Chat client asked for
    ``stream_options.include_usage``. ``gemini_sse``: a Gemini client streams with
    ``alt=sse`` (else a JSON array). ``clock`` gives Unix seconds; ``new_id(prefix)`` a
    fresh unique id such as ``call_…`` (tests inject counters).
    """

    __slots__ = ("include_usage", "gemini_sse", "clock", "new_id")

    def __init__(
        self,
        requested_model: str,
        *,
        tool_names: Optional[Callable[[], Dict[str, str]]] = None,
        include_usage: bool = False,
        gemini_sse: bool = True,
        clock: Callable[[], float] = time.time,
        new_id: Optional[Callable[[str], str]] = None,
    ):
        super().__init__(requested_model, tool_names_from=tool_names)
        self.include_usage = include_usage
        self.gemini_sse = gemini_sse
        self.clock = clock
        self.new_id = new_id or random_id

    def created(self) -> int:
        return int(self.clock())


def random_id(prefix: str) -> str:
    """``prefix`` + 24 random hex digits."""
    return prefix + uuid.uuid4().hex[:24]


def counting_ids():
    """A ``new_id`` for tests and fixtures: ``prefix`` + ``1``, ``2``, ... in order."""
    counter = itertools.count(1)
    return lambda prefix: "%s%d" % (prefix, next(counter))
