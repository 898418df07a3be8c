import pytest

from cliproxy.jsontext import loads


def test_loads_is_json_loads_for_valid_input():
    assert loads('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert loads(b'"x"') == "x"


@pytest.mark.parametrize("text", ["{", "[" * 100000 + "]" * 100000, b"\xff"])
def test_every_invalid_input_is_a_value_error(text):
    with pytest.raises(ValueError):
        loads(text)
