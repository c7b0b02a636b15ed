"""Unit tests of the response framing (``framing_py`` and its compiled twin ``framing_c``).

The server tests check framing on the wire; these check ``encode_head`` directly,
above all its one-entry cache of the last head: a hit must give exactly what an
uncached call gives, and nothing that differs from the cached head (status,
headers, default headers, flags, a list mutated in place) may hit.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from fastasgi import _speedups

DEFAULTS = b"server: fastasgi\r\ndate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"


@pytest.fixture(params=[pytest.param("c", marks=pytest.mark.c_extension), "py"])
def framing(request: pytest.FixtureRequest) -> ModuleType:
    tag = request.param
    if tag == "c" and _speedups.compiled_error() is not None:
        pytest.fail(f"the compiled implementation is {_speedups.compiled_error()}")
    return _speedups.load(tag).framing


def fresh(framing: ModuleType, *args: object) -> tuple:
    return framing.encode_head_uncached(*args)


CASES = [
    (200, [(b"content-type", b"text/plain"), (b"content-length", b"13")], DEFAULTS, True, False, 13, True),
    (200, [(b"content-type", b"text/plain")], DEFAULTS, True, False, -1, True),
    (200, [(b"content-type", b"text/plain")], DEFAULTS, False, False, -1, True),
    (200, [(b"content-type", b"text/plain")], DEFAULTS, True, True, 5, True),
    (204, [(b"content-length", b"0")], DEFAULTS, True, False, 0, True),
    (304, [], DEFAULTS, True, False, 0, True),
    (404, [(b"Content-Type", b"text/plain")], DEFAULTS, True, False, 9, False),
    (200, [(b"server", b"mine"), (b"connection", b"close")], DEFAULTS, True, False, 2, True),
    (200, ((b"x", b"1"), (b"x", b"2")), b"", True, False, 2, True),
]


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_repeated_calls_match_uncached(framing, case):
    expected = fresh(framing, *case)
    first = framing.encode_head(*case)
    second = framing.encode_head(*case)  # may come from the cache
    copied = framing.encode_head(case[0], list(case[1]), *case[2:])  # equal pairs, another list
    assert first == expected
    assert second == expected
    assert copied == expected


def test_every_input_is_part_of_the_cache_key(framing):
    base = CASES[0]
    framing.encode_head(*base)
    variants = [
        (201, *base[1:]),
        (base[0], [(b"content-type", b"text/html"), (b"content-length", b"13")], *base[2:]),
        (base[0], [(b"content-type", b"text/plain")], *base[2:]),
        (base[0], [*base[1], (b"x-extra", b"1")], *base[2:]),
        (*base[:2], DEFAULTS.replace(b"12:00:00", b"12:00:01"), *base[3:]),
        (*base[:3], False, *base[4:]),
        (*base[:4], True, *base[5:]),
        (*base[:5], 14, base[6]),
        (*base[:6], False),
    ]
    for args in variants:
        framing.encode_head(*base)  # the cache now holds base
        assert framing.encode_head(*args) == fresh(framing, *args), args


def test_list_mutated_in_place_is_not_served_from_cache(framing):
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
    framing.encode_head(200, headers, DEFAULTS, True, False, 13, True)
    headers[0] = (b"content-type", b"application/json")
    head = framing.encode_head(200, headers, DEFAULTS, True, False, 13, True)[0]
    assert b"application/json" in head
    assert b"text/plain" not in head


def test_invalid_headers_raise_even_after_a_similar_valid_head(framing):
    good = [(b"x-a", b"1")]
    framing.encode_head(200, good, DEFAULTS, True, False, 0, True)
    for bad in ([(b"x-a", b"1\r\nx-evil: 1")], [(b"x a", b"1")], [("x-a", "1")], [(b"x-a", 1)]):
        with pytest.raises(framing.ResponseHeaderError):
            framing.encode_head(200, bad, DEFAULTS, True, False, 0, True)
    with pytest.raises(framing.ResponseHeaderError):
        framing.encode_head(999, good, DEFAULTS, True, False, 0, True)


def test_non_tuple_pairs_are_encoded_but_not_cached(framing):
    # lists and bytearrays are accepted as the pairs' containers/values, but a later
    # change to them must not be hidden by the cache
    pair = [b"x-a", bytearray(b"1")]
    first = framing.encode_head(200, [pair], DEFAULTS, True, False, 0, True)
    assert b"x-a: 1\r\n" in first[0]
    pair[1][0:1] = b"2"
    second = framing.encode_head(200, [pair], DEFAULTS, True, False, 0, True)
    assert b"x-a: 2\r\n" in second[0]
