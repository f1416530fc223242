"""The admission path's text memo: a value per distinct JSON text, bounded."""

from __future__ import annotations

import msgspec
import xxhash

from flox_isa.webhook.memo import TextMemo


def _memo(size: int = 8, text_limit: int = 1024) -> tuple[TextMemo[str], list[bytes]]:
    made: list[bytes] = []

    def make(text: bytes) -> str:
        made.append(text)
        return text.decode().upper()

    return TextMemo(make, size, text_limit), made


def test_a_text_seen_before_is_not_made_again_even_as_a_view_of_a_body() -> None:
    memo, made = _memo()
    body = bytearray(b'{"a":"x","b":"x"}')
    views = [msgspec.json.decode(body, type=dict[str, msgspec.Raw])[k] for k in "ab"]
    assert [memo.get(v) for v in views] == ['"X"', '"X"']
    assert made == [b'"x"']
    body[6] = ord("y")  # the body changes (as a reused buffer would): the memo keeps a copy
    ((text, _),) = memo.entries.values()
    assert bytes(text) == b'"x"' and memo.get(b'"x"') == '"X"' and len(made) == 1


def test_a_text_whose_digest_is_anothers_gets_its_own_value() -> None:
    memo, _ = _memo()
    memo.get(b"one")
    # As if "two" had the digest of "one": the entry under it holds "one"'s text.
    memo.entries[xxhash.xxh3_64_intdigest(b"two")] = (msgspec.Raw(b"one"), "ONE")
    assert memo.get(b"two") == "TWO"


def test_the_memo_is_bounded_and_drops_its_oldest_first() -> None:
    memo, made = _memo(size=2)
    for text in (b"1", b"2", b"2", b"3", b"1"):
        memo.get(text)
    assert len(memo.entries) == 2
    assert made == [b"1", b"2", b"3", b"1"]  # the second "2" from memory; "1" had gone


def test_a_text_too_long_to_remember_is_made_each_time() -> None:
    memo, made = _memo(text_limit=2)
    for _ in range(2):
        assert memo.get(b"abc") == "ABC"
    assert made == [b"abc", b"abc"] and not memo.entries


def test_texts_of_one_length_in_turn_each_get_their_own_value_made_once() -> None:
    # The last entry answers first: it must compare the text, not only its length.
    memo, made = _memo()
    assert [memo.get(text) for text in (b"ab", b"ba", b"ab", b"ab", b"ba")] == [
        "AB", "BA", "AB", "AB", "BA"
    ]  # fmt: skip
    assert made == [b"ab", b"ba"]


def test_the_last_text_is_found_again_after_its_entry_was_dropped() -> None:
    memo, made = _memo(size=1)
    memo.get(b"one")
    memo.entries.clear()  # as if dropped for newer texts: its value is still the same
    assert memo.get(b"one") == "ONE" and made == [b"one"]
