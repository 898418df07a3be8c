"""The translation test cases, in the neutral model (``cliproxy.translate.ir``).

Every protocol has fixture files for each case under ``tests/fixtures/translate/<protocol>/``
(``anthropic``, ``chat``, ``responses``, ``gemini``):

- ``<case>.request.json`` (request cases): the protocol's request body. Its codec's
  ``read_request`` gives ``REQUESTS[case]`` and ``write_request(REQUESTS[case], MODEL)``
  gives the file back.
- ``<case>.response.json`` (answer cases): the protocol's whole answer. ``read_response``
  gives ``ANSWERS[case]`` (ids and model as in the file); ``write_response`` of that answer
  with ``answer_context()`` gives the file back.
- ``<case>.stream.sse`` (answer cases, and ``error``): a realistic provider stream of the
  same answer, as the protocol's documentation shows it (pings, several deltas). Its
  ``StreamReader`` collects ``ANSWERS[case]``; for ``error`` the stream breaks off with the
  protocol's error event after some text (``STREAM_ERROR_MESSAGE``).
- ``<case>.written.sse`` (answer cases): what the codec's ``StreamWriter`` writes for
  ``replay(ANSWERS[case])`` under ``answer_context()``: the pinned golden output.

Only what all four protocols can express is in these cases, so every directed pair can be
compared field by field; each codec's own tests cover what only its protocol has.
"""

from cliproxy.translate.ir import (
    Answer,
    AnswerContext,
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
    counting_ids,
)

PROTOCOLS = ("anthropic", "chat", "responses", "gemini")

# The model name request fixtures carry (Gemini: the name is in the URL, not the body).
MODEL = "test-model"
# The model an answer is written under, and the fixed clock of ``answer_context``.
REQUESTED_MODEL = "client-model"
CREATED = 1767225600  # 2026-01-01T00:00:00Z

# A 1x1 transparent PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

WEATHER_TOOL = Tool(
    name="get_weather",
    description="Current weather for a city.",
    schema={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
)
TIME_TOOL = Tool(
    name="get_time",
    description="Local time in a time zone.",
    schema={
        "type": "object",
        "properties": {"tz": {"type": "string"}},
        "required": ["tz"],
    },
)

REQUESTS = {
    "text": Conversation(
        system=[Text("You are terse.")],
        messages=[Message(Role.USER, [Text("Hello")])],
        max_output_tokens=256,
        temperature=0.2,
        top_p=0.9,
    ),
    # A tool round trip with two parallel calls: the request that carries both results.
    "tools": Conversation(
        system=[Text("Use the tools.")],
        messages=[
            Message(Role.USER, [Text("Weather and time in Paris?")]),
            Message(
                Role.ASSISTANT,
                [
                    Text("Checking both."),
                    ToolCall("call_w1", "get_weather", {"city": "Paris"}),
                    ToolCall("call_t2", "get_time", {"tz": "Europe/Paris"}),
                ],
            ),
            Message(
                Role.USER,
                [
                    ToolResult("call_w1", [Text("18C, sunny")], name="get_weather"),
                    ToolResult("call_t2", [Text("14:05")], name="get_time"),
                ],
            ),
        ],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice=ToolChoice(ToolChoiceMode.AUTO),
        max_output_tokens=1024,
    ),
    "image": Conversation(
        messages=[Message(Role.USER, [Text("What is in this image?"), Media("image/png", data=PNG)])],
        max_output_tokens=300,
    ),
}

ANSWERS = {
    "text": Answer(
        parts=[Text("Hello! How can I help?")],
        stop=Stop.END_TURN,
        usage=Usage(input_tokens=12, output_tokens=8, cache_read=10),
    ),
    "tools": Answer(
        parts=[
            Text("Checking both."),
            ToolCall("call_w1", "get_weather", {"city": "Paris"}),
            ToolCall("call_t2", "get_time", {"tz": "Europe/Paris"}),
        ],
        stop=Stop.TOOL_USE,
        usage=Usage(input_tokens=120, output_tokens=40),
    ),
    "thinking": Answer(
        parts=[Thinking("The user wants the answer. It is 42."), Text("The answer is 42.")],
        stop=Stop.END_TURN,
        usage=Usage(input_tokens=20, output_tokens=30),
    ),
    "max_tokens": Answer(
        parts=[Text("Once upon a time")],
        stop=Stop.MAX_TOKENS,
        usage=Usage(input_tokens=9, output_tokens=4),
    ),
}

# The text an ``error.stream.sse`` sends before it breaks off, and its error's message.
STREAM_ERROR_TEXT = "Partial"
STREAM_ERROR_MESSAGE = "Overloaded"


def answer_context(**options):
    """The ``AnswerContext`` golden outputs are written under: fixed clock and ids."""
    options.setdefault("clock", lambda: CREATED)
    options.setdefault("new_id", counting_ids())
    return AnswerContext(REQUESTED_MODEL, **options)
