import json
import random

import pytest

from cliproxy.jsontext import loads


def test_loads_is_json_loads_for_valid_input():
    assert loads('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert loads(b'"x"') == "x"


@pytest.mark.parametrize("text", ["{", "[" * 100000 + "]" * 100000, b"\xff"])
def test_every_invalid_input_is_a_value_error(text):
    with pytest.raises(ValueError):
        loads(text)


# loads hands a str holding one JSON value and nothing else straight to json's scanner;
# everything else is json.loads's. Both ways must give what json.loads gives, errors
# included, message for message.
TEXTS = [
    '{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"caf\\u00e9 \\"q\\" \\\\ \\ud83d\\ude42"}}]}',
    '{"a": 1, "a": 2}',
    '[1, 2.5e3, -0, true, false, null, "x"]',
    '"text"',
    "12",
    "-1.5E-3",
    "NaN",
    "-Infinity",
    "[NaN, Infinity]",
    "true",
    "null",
    '"\\ud800 lone surrogate"',
    '"é€🙂 raw non-ASCII"',
    "{}",
    "[]",
    " {} ",
    "{}\n",
    "\t[1]",
    "\ufeff{}",
    "",
    " ",
    "{} {}",
    "[1,]",
    '{"a" 1}',
    '{"a":1,}',
    '"unterminated',
    '"raw \x01 control"',
    '"bad \\x escape"',
    "tru",
    "01",
    "[" * 50 + "]" * 50,
    "[" * 100000,
    "{" * 100000,
    '{"a":' * 100000,
]


def _outcome(function, text):
    try:
        return ("value", function(text))
    except (ValueError, RecursionError) as error:
        return ("error", type(error) if not isinstance(error, RecursionError) else ValueError, str(error)[:40])


def _same(a, b):
    # NaN is not equal to itself: compare the JSON it re-encodes to.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("text", TEXTS)
def test_loads_gives_what_json_loads_gives(text):
    expected = _outcome(json.loads, text)
    got = _outcome(loads, text)
    if expected[0] == "value":
        assert got[0] == "value" and _same(got[1], expected[1]) and type(got[1]) is type(expected[1])
    elif "recursion" in expected[2].lower():
        assert got == ("error", ValueError, "nested too deeply")
    else:
        assert got == expected


def test_loads_gives_what_json_loads_gives_for_random_texts():
    rng = random.Random(9)
    atoms = ['"a"', '"\\u00e9"', '"\\n"', "1", "-2.5", "true", "null", "[", "]", "{", "}", '"k":', ",", " ", "\n"]
    for _ in range(5000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        expected, got = _outcome(json.loads, text), _outcome(loads, text)
        if expected[0] == "value":
            assert got[0] == "value" and _same(got[1], expected[1]), text
        else:
            assert got == expected, text


def test_loads_passes_options_and_bytes_to_json_loads():
    assert loads('{"a": 1.5}', parse_float=str) == {"a": "1.5"}
    assert loads(b'{"a": "\\u00e9"}') == {"a": "é"}
    assert loads(bytearray(b"[1]")) == [1]
