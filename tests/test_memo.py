"""The bounded memo: computed once per key, bounded, nothing stored on failure."""

import pytest

from cliproxy.memo import Memo


def test_a_value_is_computed_once_and_then_read_back():
    calls = []

    def square(key):
        calls.append(key)
        return key * key

    memo = Memo(square, 8)
    assert memo[3] == 9
    assert memo[3] == 9
    assert memo[4] == 16
    assert calls == [3, 4]


def test_it_never_holds_more_than_its_size():
    memo = Memo(lambda key: key, 3)
    for key in range(10):
        assert memo[key] == key
        assert len(memo) <= 3
    assert 9 in memo  # the newest key survives an emptying


def test_a_failing_computation_stores_nothing_and_is_tried_again():
    attempts = []

    def fragile(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise ValueError("first time")
        return key

    memo = Memo(fragile, 4)
    with pytest.raises(ValueError):
        memo["a"]
    assert "a" not in memo
    assert memo["a"] == "a"
    assert attempts == ["a", "a"]


def test_a_full_memo_keeps_its_entries_when_the_new_key_fails():
    memo = Memo(lambda key: 1 // key, 2)
    memo[1]
    memo[-1]
    with pytest.raises(ZeroDivisionError):
        memo[0]
    assert set(memo) == {1, -1}


def test_a_memo_must_hold_something():
    with pytest.raises(ValueError):
        Memo(lambda key: key, 0)
