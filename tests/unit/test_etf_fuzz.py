# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property and hostile-input tests for the ETF codec (no Erlang needed).

(a) Random Python terms round-trip: decode(encode(t)) is t, type for type and
    float bit for float bit, and re-encoding gives the same bytes.
(b) Random bytes and mutated valid encodings: binary_to_term either returns a
    term (which then survives encode/decode itself) or raises TermError;
    never IndexError, struct.error, RecursionError, MemoryError, ...; each call
    costs little CPU.
(c) Hand-made hostile inputs: huge declared sizes, zip bombs, deep nesting,
    tags that must be refused.
(d) Issue 9: deep and large structures; the memory budget (what a decode
    charges covers what it allocates, measured), the deadline and linear list
    tails; everything that renders terms (format_term, the module helpers of
    erlang_node.py and ejabberd.py) gives bounded, JSON-serialisable text for
    any term, or DistError.

Set-up: tests/conftest.py loads the hypothesis profile (no deadline: CI shares
2 cores), so the time bound is enforced here on CPU time per call instead.
In CI (``CI`` set) the examples are derandomized, so a run is repeatable;
elsewhere they are random, and a failure is saved in .hypothesis/.
"""

from __future__ import annotations

# Exact types are the point here (bytes, not BitBinary; Atom, not str).
# pylint: disable=unidiomatic-typecheck

import json
import os
import struct
import sys
import time
import tracemalloc
import zlib
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ansible_collections.xmpp.ejabberd.plugins.module_utils import ejabberd, erlang_node, erldist, etf

DERANDOMIZE = bool(os.environ.get("CI"))


def fuzz(max_examples):
    """Settings for one property: on top of the profile tests/conftest.py loaded."""
    return settings(max_examples=max_examples, derandomize=DERANDOMIZE,
                    suppress_health_check=[HealthCheck.too_slow])


# CPU seconds one decode of a small (< 10 kB) input may take. Generous: the
# point is to catch super-linear blow-ups, not to benchmark.
CALL_CPU_BOUND = 1.0

V = bytes([etf.VERSION])
KNOWN_TAGS = sorted({v for k, v in vars(etf).items()
                     if k.endswith("_EXT") or k in ("COMPRESSED", "ATOM_CACHE_REF")})

BUG_DEPTH_COMPRESSED = ("codec bug: decode_term only turns RecursionError into TermError on the "
                        "uncompressed path; a deeply nested COMPRESSED term raises RecursionError")
BUG_DEPTH = ("codec bug: the recursive decoder/encoder runs out of Python stack "
             "(RecursionError / 'nested too deeply') well before MAX_DEPTH levels")
BUG_HASH_FLOOD = ("codec weakness: MAP_EXT goes straight into a dict; integer keys with equal "
                  "hashes (k * (2**61 - 1)) make decoding quadratic (hash flooding)")
BUG_ENCODER_ERRORS = ("codec bug: the encoder lets struct.error / OverflowError / "
                      "UnicodeEncodeError out for values it cannot encode, instead of TermError")
BUG_ENCODER_EMITS_INVALID = ("codec bug: the encoder writes bytes that its own decoder (and erl) "
                             "refuse instead of raising TermError")
LENIENT_NAN = ("codec leniency: the encoder writes NaN/infinity as NEW_FLOAT_EXT, which erl's "
               "binary_to_term refuses (see test_etf_golden reject_new_float_*)")


# --------------------------------------------------------------------------- helpers

def _u32(n):
    return struct.pack(">I", n)


def _compressed(body, claim=None, level=6):
    return V + bytes([etf.COMPRESSED]) + _u32(len(body) if claim is None else claim) + zlib.compress(
        body, level)


def _float_bits(value):
    return struct.pack(">d", value)


def same(a, b):  # pylint: disable=too-many-return-statements
    """Structural equality that also checks types, float bits and ordering."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return _float_bits(a) == _float_bits(b)
    if isinstance(a, etf.ImproperList):
        return same(list(a), list(b)) and same(a.tail, b.tail)
    if isinstance(a, (list, tuple)):  # also MapPairs: a list of (key, value) tuples
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return same(list(a.items()), list(b.items()))
    if isinstance(a, etf.BitBinary):
        return bytes(a) == bytes(b) and a.bits == b.bits
    if isinstance(a, (etf.Pid, etf.Port, etf.Reference)):
        return a == b and type(a.node) is type(b.node) is etf.Atom
    if isinstance(a, etf.Export):
        return a == b and same(a.module, b.module) and same(a.function, b.function)
    return a == b


class _Refused:
    """Marker: binary_to_term raised TermError."""


REFUSED = _Refused()


def decode_checked(data, **kwargs):
    """binary_to_term, allowing only TermError out, within the CPU bound."""
    start = time.process_time()
    try:
        result = etf.binary_to_term(data, **kwargs)
    except etf.TermError as exc:
        assert str(exc), "TermError without a message"
        result = REFUSED
    elapsed = time.process_time() - start
    assert elapsed < CALL_CPU_BOUND, "binary_to_term took %.2f s of CPU on %d bytes" % (
        elapsed, len(data))
    return result


def assert_reencodes(term):
    """What the decoder returns, the encoder writes back (or refuses with TermError), and
    decoding that again gives the same term."""
    try:
        data = etf.term_to_binary(term)
    except etf.TermError:
        return
    again = etf.binary_to_term(data)
    assert same(again, term), "decode(encode(x)) != x for decoded x = %r" % (term,)


# --------------------------------------------------------------------------- strategies

U32 = st.integers(0, 2 ** 32 - 1)
ATOM_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=255).filter(
    lambda s: s not in ("true", "false"))
ATOMS = st.one_of(
    ATOM_TEXT.map(etf.Atom),
    st.text("abcdefghijklmnopqrstuvwxyz_@.", min_size=1, max_size=12).filter(
        lambda s: s not in ("true", "false")).map(etf.Atom),
)
NODE_NAMES = st.sampled_from(["nonode@nohost", "ejabberd@localhost", "a@b", "\u00f1@x"]) | ATOM_TEXT
INT_EDGES = [0, 255, 256, -1, -256, 2 ** 31 - 1, -2 ** 31, 2 ** 31, -2 ** 31 - 1,
             2 ** 32, 2 ** 64, -2 ** 64, 2 ** 2040 - 1, 2 ** 2040, -(2 ** 2040), 2 ** 3000]
INTS = st.one_of(
    st.integers(-300, 300),
    st.integers(),
    st.integers(-(2 ** 70), 2 ** 70),
    st.integers(-(2 ** 4000), 2 ** 4000),
    st.sampled_from(INT_EDGES),
)
# Erlang has no NaN or infinity (erl refuses them), so neither do the round-trip terms.
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
BINARIES = st.binary(max_size=300)
# Bitstrings as erl makes them: 1..7 bits used in the last byte, the unused bits zero.
BIT_BINARIES = st.builds(
    lambda data, bits: etf.BitBinary(data[:-1] + bytes([data[-1] & (0xFF << (8 - bits)) & 0xFF]), bits),
    st.binary(min_size=1, max_size=40), st.integers(1, 7))
PIDS = st.builds(etf.Pid, NODE_NAMES, U32, U32, U32)
PORTS = st.builds(etf.Port, NODE_NAMES, st.integers(0, 2 ** 64 - 1), U32)
REFS = st.builds(etf.Reference, NODE_NAMES, U32, st.lists(U32, min_size=1, max_size=5))
EXPORTS = st.builds(etf.Export, ATOMS, ATOMS, st.integers(0, 255))
BYTE_LISTS = st.binary(min_size=1, max_size=300).map(list)  # STRING_EXT

HASHABLE_LEAVES = st.one_of(ATOMS, st.booleans(), INTS, FLOATS, BINARIES, BIT_BINARIES,
                            PIDS, PORTS, REFS, EXPORTS)
LEAVES = HASHABLE_LEAVES | st.just([]) | BYTE_LISTS
HASHABLE = st.recursive(HASHABLE_LEAVES, lambda c: st.lists(c, max_size=4).map(tuple),
                        max_leaves=6)


def _draw_term(draw, depth, budget):
    """One term, containers nested at most ``depth`` deep, about ``budget[0]`` leaves.

    Written as a plain recursive draw (not st.recursive) because strategies built
    from many nested combinators make hypothesis spend seconds on their repr."""
    if depth <= 0 or budget[0] <= 0 or draw(st.integers(0, 2)) == 0:
        budget[0] -= 1
        return draw(LEAVES)
    kind = draw(st.sampled_from(["list", "tuple", "improper", "map", "map_pairs"]))
    items = [_draw_term(draw, depth - 1, budget) for dummy in range(draw(st.integers(0, 5)))]
    if kind == "list":
        return items
    if kind == "tuple":
        return tuple(items)
    if kind == "improper":
        return etf.ImproperList(items or [_draw_term(draw, depth - 1, budget)],
                                draw(HASHABLE_LEAVES))
    if kind == "map":
        return {draw(HASHABLE): item for item in items}
    # MapPairs: the first key cannot be hashed (a list), the others are distinct.
    pairs, seen = [], set()
    for item in [_draw_term(draw, depth - 1, budget)] + items:
        key = [_draw_term(draw, depth - 1, budget)] if not pairs else draw(
            HASHABLE | st.lists(HASHABLE_LEAVES, max_size=2))
        if repr(key) not in seen:
            seen.add(repr(key))
            pairs.append((key, item))
    return etf.MapPairs(pairs)


@st.composite
def terms(draw, max_depth=4, max_leaves=30):
    return _draw_term(draw, max_depth, [max_leaves])


TERMS = terms()
SMALL_TERMS = terms(max_depth=3, max_leaves=10)


# --------------------------------------------------------------------------- (a) round trip

@fuzz(200)
@given(TERMS)
@example(etf.Atom("\u00f1" * 255))
@example([etf.Atom("x")] * 3 + [-0.0, 5e-324])
@example(etf.ImproperList([1, 2], b"t"))
@example({(): [], etf.BitBinary(b"\x80", 1): {}})
def test_round_trip(term):
    data = etf.term_to_binary(term)
    back = etf.binary_to_term(data)
    assert same(back, term), "decoded %r" % (back,)
    assert etf.term_to_binary(back) == data
    # The same term inside a larger buffer, from an offset.
    at, end = etf.decode_term(b"junk" + data + b"more", 4)
    assert same(at, term) and end == 4 + len(data)


@fuzz(100)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=100))
def test_python_str_is_an_erlang_string(text):
    data = etf.term_to_binary(text)
    assert data == etf.term_to_binary([ord(c) for c in text])
    back = etf.binary_to_term(data)
    assert back == [ord(c) for c in text] and etf.as_text(back) == text


@fuzz(40)
@given(TERMS)
def test_compressed_round_trip(term):
    body = etf.term_to_binary(term)[1:]
    data = _compressed(body)
    assert same(etf.binary_to_term(data), term)
    assert same(etf.binary_to_term(data, max_inflated=len(body)), term)
    with pytest.raises(etf.TermError):
        etf.binary_to_term(data, max_inflated=len(body) - 1)


def test_bytes_like_inputs():
    data = etf.term_to_binary({etf.Atom("k"): [1, 2.5, b"x"]})
    for variant in (bytearray(data), memoryview(data)):
        assert same(etf.binary_to_term(variant), etf.binary_to_term(data))


# --------------------------------------------------------------------------- (b) garbage in

def _mutate(draw, data):
    data = bytearray(data)
    for dummy in range(draw(st.integers(1, 4))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        idx = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "huge", "dup", "tag",
                                   "small"]))
        if op == "flip":
            data[idx] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[idx:]
        elif op == "insert":
            data[idx:idx] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[idx:idx + draw(st.integers(1, 8))]
        elif op == "huge":  # a length field that claims far more than is there
            data[idx:idx + 4] = draw(st.sampled_from(
                [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
                 b"\x00\x01\x00\x00", b"\xff\xff", b"\x01\x00\x00\x00\x00"]))
        elif op == "dup":
            end = draw(st.integers(idx, len(data)))
            where = draw(st.integers(0, len(data)))
            data[where:where] = data[idx:end]
        elif op == "tag":
            data[idx] = draw(st.sampled_from(KNOWN_TAGS))
        else:  # a length field that claims less
            data[idx:idx + 4] = draw(st.sampled_from([b"\x00\x00\x00\x00", b"\x00\x00\x00\x01",
                                                      b"\x00"]))
    return bytes(data)


@st.composite
def mutated_encodings(draw):
    data = etf.term_to_binary(draw(SMALL_TERMS))
    how = draw(st.sampled_from(["plain", "plain", "compress_after", "compress_before"]))
    if how == "compress_after":  # a valid COMPRESSED wrapper around mangled bytes
        return _compressed(_mutate(draw, data[1:]))
    if how == "compress_before":  # mangle the COMPRESSED framing or zlib stream itself
        return _mutate(draw, _compressed(data[1:]))
    return _mutate(draw, data)


@st.composite
def tag_soup(draw):
    """Random bytes that start like terms: version byte, then known tags and small numbers."""
    chunks = [V] if draw(st.integers(0, 9)) else []
    for dummy in range(draw(st.integers(1, 24))):
        chunks.append(draw(st.one_of(
            st.sampled_from(KNOWN_TAGS).map(lambda t: bytes([t])),
            st.integers(0, 8).map(lambda n: bytes([n])),
            st.sampled_from([b"\x00\x00\x00\x01", b"\x00\x00\x00\x02", b"\x00\x03", b"\xff\xff"]),
            st.binary(max_size=6),
        )))
    return b"".join(chunks)


@fuzz(400)
@given(mutated_encodings())
def test_mutated_encodings_only_raise_term_error(data):
    result = decode_checked(data)
    if result is not REFUSED:
        assert_reencodes(result)


_FLOAT_TEXT = st.text("0123456789.eE+-_ nainfINF", max_size=31).map(lambda t: t.encode("ascii"))
_LENGTH_HEADERS = {
    etf.STRING_EXT: lambda n, draw: struct.pack(">H", n),
    etf.ATOM_EXT: lambda n, draw: struct.pack(">H", n),
    etf.ATOM_UTF8_EXT: lambda n, draw: struct.pack(">H", n),
    etf.SMALL_ATOM_EXT: lambda n, draw: bytes([min(n, 255)]),
    etf.SMALL_ATOM_UTF8_EXT: lambda n, draw: bytes([min(n, 255)]),
    etf.BINARY_EXT: lambda n, draw: _u32(n),
    etf.BIT_BINARY_EXT: lambda n, draw: _u32(n) + bytes([draw(st.integers(0, 9))]),
    etf.SMALL_BIG_EXT: lambda n, draw: bytes([min(n, 255), draw(st.integers(0, 2))]),
    etf.LARGE_BIG_EXT: lambda n, draw: _u32(n) + bytes([draw(st.integers(0, 2))]),
    etf.NEW_FUN_EXT: lambda n, draw: _u32(n + 4),
    etf.SMALL_TUPLE_EXT: lambda n, draw: bytes([min(n // 2, 255)]),
    etf.LARGE_TUPLE_EXT: lambda n, draw: _u32(n // 2),
    etf.LIST_EXT: lambda n, draw: _u32(n // 2),
    etf.MAP_EXT: lambda n, draw: _u32(n // 4),
}


@st.composite
def framed(draw):
    """One known tag with a plausible header (a length near the payload's) and random bytes."""
    tag = draw(st.sampled_from(KNOWN_TAGS))
    if tag == etf.FLOAT_EXT:
        text = draw(_FLOAT_TEXT | st.binary(max_size=31))
        return V + bytes([tag]) + text + b"\0" * (31 - len(text))
    payload = draw(st.one_of(
        st.binary(max_size=40),
        st.text(max_size=12).map(lambda t: t.encode("utf-8")),
        st.text(min_size=1, max_size=12).map(lambda t: t.encode("utf-8")[:-1]),  # cut mid-character
        st.lists(st.integers(0x80, 0xFF), max_size=12).map(bytes),
    ))
    size = max(0, len(payload) + draw(st.sampled_from([0, 0, 0, -1, 1, -2, 2])))
    header = _LENGTH_HEADERS.get(tag, lambda n, draw: b"")(size, draw)
    return V + bytes([tag]) + header + payload


@fuzz(500)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: V + b), tag_soup(),
                 framed(), framed()))
@example(b"")
@example(V)
@example(V + bytes([etf.COMPRESSED]))
@example(V + bytes([etf.FLOAT_EXT]) + b"1e" + b"\0" * 29)
@example(V + bytes([etf.SMALL_ATOM_UTF8_EXT, 2]) + b"\xc3(")
def test_random_bytes_only_raise_term_error(data):
    result = decode_checked(data)
    if result is not REFUSED:
        assert_reencodes(result)


@fuzz(200)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=255).map(lambda t: t.encode("utf-8")),
                 st.lists(st.integers(0x80, 0xFF), max_size=8).map(bytes)),
       st.sampled_from([etf.SMALL_ATOM_UTF8_EXT, etf.ATOM_UTF8_EXT, etf.SMALL_ATOM_EXT, etf.ATOM_EXT]))
def test_atom_bytes(raw, tag):
    """An atom is its bytes decoded as UTF-8 (the *_UTF8_EXT tags) or latin-1; bad UTF-8 is
    a TermError; 'true' and 'false' are bools."""
    small = tag in (etf.SMALL_ATOM_UTF8_EXT, etf.SMALL_ATOM_EXT)
    if small:
        raw = raw[:255]
    data = V + bytes([tag]) + (bytes([len(raw)]) if small else struct.pack(">H", len(raw))) + raw
    encoding = "latin-1" if tag in (etf.SMALL_ATOM_EXT, etf.ATOM_EXT) else "utf-8"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        with pytest.raises(etf.TermError):
            etf.binary_to_term(data)
        return
    result = etf.binary_to_term(data)
    if text in ("true", "false"):
        assert result is (text == "true")
    else:
        assert type(result) is etf.Atom and result == text


@fuzz(60)
@given(mutated_encodings(), st.integers(0, 64))
def test_decode_term_offsets(data, offset):
    """decode_term from an offset: a term and an end inside the buffer, or TermError."""
    buf = b"\x00" * offset + data
    try:
        term, end = etf.decode_term(buf, offset)
    except etf.TermError:
        return
    assert offset < end <= len(buf)
    assert same(etf.binary_to_term(buf[offset:end]), term)


# --------------------------------------------------------------------------- (c) hostile inputs

ALL_ONES = 2 ** 32 - 1
NODE = bytes([etf.SMALL_ATOM_UTF8_EXT, 3]) + b"a@b"

HUGE_CLAIMS = {
    "large_tuple": V + bytes([etf.LARGE_TUPLE_EXT]) + _u32(ALL_ONES) + b"jjjjj",
    "list": V + bytes([etf.LIST_EXT]) + _u32(ALL_ONES) + b"jjjjj",
    "map": V + bytes([etf.MAP_EXT]) + _u32(ALL_ONES) + b"jjjjj",
    "string": V + bytes([etf.STRING_EXT, 0xFF, 0xFF]) + b"abcde",
    "binary": V + bytes([etf.BINARY_EXT]) + _u32(ALL_ONES) + b"abcde",
    "bit_binary": V + bytes([etf.BIT_BINARY_EXT]) + _u32(ALL_ONES) + b"\x03abcde",
    "large_big_4gb": V + bytes([etf.LARGE_BIG_EXT]) + _u32(ALL_ONES) + b"\x00abcde",
    "small_big": V + bytes([etf.SMALL_BIG_EXT, 0xFF, 0]) + b"abcde",
    "atom_utf8": V + bytes([etf.ATOM_UTF8_EXT, 0xFF, 0xFF]) + b"abcde",
    "atom_latin1": V + bytes([etf.ATOM_EXT, 0xFF, 0xFF]) + b"abcde",
    "new_fun": V + bytes([etf.NEW_FUN_EXT]) + _u32(ALL_ONES) + b"abcde",
    "new_fun_size_below_4": V + bytes([etf.NEW_FUN_EXT]) + _u32(3) + b"abcde",
    "old_fun_free_vars": V + bytes([etf.FUN_EXT]) + _u32(ALL_ONES) + b"jjjjj",
    "reference_words": V + bytes([etf.NEWER_REFERENCE_EXT, 0xFF, 0xFF]) + NODE + b"\x00" * 8,
    "tuple_of_huge_tuples": V + bytes([etf.SMALL_TUPLE_EXT, 255]) + (
        bytes([etf.LARGE_TUPLE_EXT]) + _u32(ALL_ONES)) * 255,
    "list_of_huge_binaries": V + bytes([etf.LIST_EXT]) + _u32(1000) + (
        bytes([etf.BINARY_EXT]) + _u32(ALL_ONES)) * 1000,
    "compressed_claims_4gb": V + bytes([etf.COMPRESSED]) + _u32(ALL_ONES) + zlib.compress(b"j"),
    "compressed_claims_max_truncated": V + bytes([etf.COMPRESSED]) + _u32(
        etf.DEFAULT_MAX_INFLATED) + zlib.compress(b"j" * 1000)[:20],
    "compressed_not_zlib": V + bytes([etf.COMPRESSED]) + _u32(5) + b"not zlib at all",
}


@contextmanager
def bounded(max_bytes=1 << 20, max_cpu=CALL_CPU_BOUND):
    """The block may allocate at most ``max_bytes`` (Python heap, tracemalloc) at peak
    and use at most ``max_cpu`` seconds of CPU."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    start = time.process_time()
    try:
        yield
    finally:
        elapsed = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1] - base
        if not was_tracing:
            tracemalloc.stop()
    assert peak <= max_bytes, "allocated %d bytes at peak (bound %d)" % (peak, max_bytes)
    assert elapsed < max_cpu, "took %.2f s of CPU (bound %.2f)" % (elapsed, max_cpu)


@pytest.mark.parametrize("name", sorted(HUGE_CLAIMS))
def test_huge_declared_sizes_are_refused_without_allocating(name):
    with bounded(max_bytes=1 << 20):
        with pytest.raises(etf.TermError):
            etf.binary_to_term(HUGE_CLAIMS[name])


BOMB_SIZE = 50 * 1024 * 1024
SMALL_LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def zip_bomb():
    """zlib data that inflates to 50 MB of zero bytes (about 50 kB), made in 1 MB steps."""
    packer = zlib.compressobj(9)
    chunk = b"\0" * (1024 * 1024)
    packed = b"".join(packer.compress(chunk) for dummy in range(BOMB_SIZE // len(chunk)))
    return packed + packer.flush()


def test_zip_bomb_honest_claim_refused_before_inflating(zip_bomb):
    data = V + bytes([etf.COMPRESSED]) + _u32(BOMB_SIZE) + zip_bomb
    with bounded(max_bytes=len(data) * 3 + (1 << 20)):
        with pytest.raises(etf.TermError, match="claims"):
            etf.binary_to_term(data, max_inflated=SMALL_LIMIT)


@pytest.mark.parametrize("claim", [1000, SMALL_LIMIT])
def test_zip_bomb_lying_claim_stops_at_the_claim(zip_bomb, claim):
    data = V + bytes([etf.COMPRESSED]) + _u32(claim) + zip_bomb
    with bounded(max_bytes=len(data) * 3 + 3 * SMALL_LIMIT):
        with pytest.raises(etf.TermError, match="inflates to more"):
            etf.binary_to_term(data, max_inflated=SMALL_LIMIT)


def test_default_inflate_limit_refuses_a_bigger_claim():
    data = V + bytes([etf.COMPRESSED]) + _u32(etf.DEFAULT_MAX_INFLATED + 1) + zlib.compress(b"j")
    with bounded():
        with pytest.raises(etf.TermError, match="claims"):
            etf.binary_to_term(data)


DEEP = 100000


DEEP_BODIES = {
    "list": lambda n: (bytes([etf.LIST_EXT]) + _u32(1)) * n + b"j" * (n + 1),
    "tuple": lambda n: bytes([etf.SMALL_TUPLE_EXT, 1]) * n + b"j",
    "large_tuple": lambda n: (bytes([etf.LARGE_TUPLE_EXT]) + _u32(1)) * n + b"j",
    "map_value": lambda n: (bytes([etf.MAP_EXT]) + _u32(1) + b"j") * n + b"j",
    "map_key": lambda n: (bytes([etf.MAP_EXT]) + _u32(1)) * n + b"j" + b"j" * n,
    "improper_tail": lambda n: (bytes([etf.LIST_EXT]) + _u32(1) + b"j") * n + b"a\x01",
    "pid_node": lambda n: (bytes([etf.NEW_PID_EXT])) * n + NODE + b"\0" * 12 * n,
    "export_module": lambda n: bytes([etf.EXPORT_EXT]) * n + (NODE + NODE + b"a\x01") * n,
    "old_fun_free_var": lambda n: (bytes([etf.FUN_EXT]) + _u32(1) + bytes(
        [etf.NEW_PID_EXT]) + NODE + b"\0" * 12 + NODE + b"a\x00a\x00") * n + b"j",
}


@pytest.mark.parametrize("levels", [etf.MAX_DEPTH + 1, DEEP])
@pytest.mark.parametrize("kind", sorted(DEEP_BODIES))
def test_deep_nesting_is_a_term_error(kind, levels):
    data = V + DEEP_BODIES[kind](levels)
    with bounded(max_bytes=len(data) * 4 + (4 << 20)):
        with pytest.raises(etf.TermError, match="nested"):
            etf.binary_to_term(data)


def _no_recursion_error(func, *args):
    """Call func; a RecursionError fails the test with a one-line message (pytest would
    otherwise spend a second formatting a thousand-frame traceback)."""
    try:
        return func(*args)
    except RecursionError:
        pytest.fail("RecursionError escaped from %s" % func.__name__, pytrace=False)


@pytest.mark.parametrize("levels", [etf.MAX_DEPTH + 1, DEEP])
@pytest.mark.parametrize("kind", ["list", "tuple", "map_value", "pid_node"])
def test_deep_nesting_compressed_is_a_term_error(kind, levels):
    data = _compressed(DEEP_BODIES[kind](levels), level=9)
    assert len(data) < 2000  # a few hundred bytes on the wire
    with pytest.raises(etf.TermError, match="nested"):
        _no_recursion_error(etf.binary_to_term, data)


def _python_nest(kind, levels):
    term = []
    for dummy in range(levels):
        term = [term] if kind == "list" else (term,)
    return term


@pytest.mark.parametrize("levels", [etf.MAX_DEPTH + 1, DEEP])
@pytest.mark.parametrize("kind", [
    "tuple",
    pytest.param("list"),
])
def test_encoder_deep_nesting_is_a_term_error(kind, levels):
    term = _python_nest(kind, levels)
    with pytest.raises(etf.TermError, match="nested"):
        _no_recursion_error(etf.term_to_binary, term)


@pytest.mark.parametrize("tag", sorted(set(range(256)) - set(KNOWN_TAGS)))
def test_unknown_tags_are_refused(tag):
    with pytest.raises(etf.TermError, match="unknown term tag %d" % tag):
        etf.binary_to_term(V + bytes([tag]) + b"\0" * 16)


@pytest.mark.parametrize("data,match", [
    (V + bytes([etf.ATOM_CACHE_REF, 0]), "ATOM_CACHE_REF"),
    (V + bytes([etf.SMALL_TUPLE_EXT, 2, etf.ATOM_CACHE_REF, 0, etf.ATOM_CACHE_REF, 1]),
     "ATOM_CACHE_REF"),
    (V + bytes([etf.LOCAL_EXT]) + b"\0" * 20, "LOCAL_EXT"),
    (V + bytes([etf.SMALL_TUPLE_EXT, 1]) + _compressed(b"j")[1:], "COMPRESSED"),
    (b"", "truncated"),
    (b"\x82a\x01", "version"),
    (V + b"a\x01a\x02", "stray"),
    (_compressed(b"a\x01a\x02"), "stray"),
    (_compressed(b"a"), "truncated"),
], ids=["atom_cache_ref", "atom_cache_ref_nested", "local_ext", "compressed_nested", "empty",
        "bad_version", "stray_bytes", "stray_bytes_compressed", "compressed_truncated_term"])
def test_refused_with_a_reason(data, match):
    with pytest.raises(etf.TermError, match=match):
        etf.binary_to_term(data)


def test_decode_term_returns_the_end_offset():
    one, two = etf.term_to_binary((1, b"x")), etf.term_to_binary([2.5])
    first, end = etf.decode_term(one + two)
    second, end2 = etf.decode_term(one + two, end)
    assert (first, second, end, end2) == ((1, b"x"), [2.5], len(one), len(one) + len(two))


def test_map_with_colliding_integer_keys_is_not_quadratic():
    count = 8000
    mersenne = 2 ** 61 - 1  # hash(k * mersenne) == 0 for every k
    colliding = etf.term_to_binary({k * mersenne: 0 for k in range(1, count + 1)})
    spread = etf.term_to_binary({k * mersenne + k: 0 for k in range(1, count + 1)})
    assert abs(len(colliding) - len(spread)) < len(spread) // 100
    times = []
    for data in (spread, colliding):
        start = time.process_time()
        etf.binary_to_term(data)
        times.append(time.process_time() - start)
    assert times[1] < 10 * times[0] + 0.05, "colliding keys: %.3f s, spread keys: %.3f s" % (
        times[1], times[0])


# --------------------------------------------------------------------------- encoder limits

ENCODER_REFUSES = [
    pytest.param(etf.Atom("a" * 256), id="atom_256_chars"),
    pytest.param(etf.Pid(etf.Atom("a" * 256), 1, 0, 0), id="pid_node_256_chars"),
    pytest.param({1, 2}, id="set"),
    pytest.param(object(), id="object"),
    pytest.param(None, id="none"),
    pytest.param(etf.Pid("a@b", 2 ** 32, 0, 0), id="pid_id_2p32"),
    pytest.param(etf.Pid("a@b", -1, 0, 0), id="pid_id_negative"),
    pytest.param(etf.Port("a@b", 2 ** 64, 0), id="port_id_2p64"),
    pytest.param(etf.Reference("a@b", 2 ** 32, [1]), id="ref_creation_2p32"),
    pytest.param(etf.Atom("\ud800"), id="atom_lone_surrogate"),
    pytest.param(etf.Reference("a@b", 0, range(6)), id="ref_6_words"),
    pytest.param(etf.BitBinary(b"", 3), id="bit_binary_empty"),
    pytest.param(etf.BitBinary(b"a", 0), id="bit_binary_0_bits"),
    pytest.param(etf.BitBinary(b"a", 9), id="bit_binary_9_bits"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("-inf"), id="-inf"),
]


@pytest.mark.parametrize("term", ENCODER_REFUSES)
def test_encoder_refuses_with_term_error(term):
    with pytest.raises(etf.TermError):
        etf.term_to_binary(term)


# --------------------------------------------------------------------------- (d) issue 9

def _charges_cover(data, budget, what):
    """Decode ``data`` with a budget of ``budget`` bytes: whether it is refused or
    not, the Python heap may not grow past the budget (plus a little for the
    decoder's own frames and the last, uncharged, step)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            etf.binary_to_term(data, max_bytes=budget)
            refused = False
        except etf.TermError:
            refused = True
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak <= budget + (256 << 10), "%s: %d bytes allocated for a budget of %d" % (
        what, peak, budget)
    return refused


def _list(count, element):
    return bytes([etf.LIST_EXT]) + _u32(count) + element * count + b"j"


_SMALL_NODE = bytes([etf.SMALL_ATOM_UTF8_EXT, 3]) + b"n@h"
# Shapes that make many Python objects from few bytes: (what, element encoding).
CHEAP_ON_THE_WIRE = {
    "small_ints": bytes([etf.SMALL_INTEGER_EXT, 7]),
    "ints": bytes([etf.INTEGER_EXT]) + _u32(123456789),
    "floats": bytes([etf.NEW_FLOAT_EXT]) + struct.pack(">d", 1.5),
    "atoms_short": bytes([etf.SMALL_ATOM_UTF8_EXT, 1]) + b"a",
    "atoms_255_emoji": bytes([etf.ATOM_UTF8_EXT]) + struct.pack(">H", 255 * 4) + "\U0001F600".encode() * 255,
    "empty_lists": b"j",
    "empty_tuples": bytes([etf.SMALL_TUPLE_EXT, 0]),
    "pairs": bytes([etf.SMALL_TUPLE_EXT, 2, etf.SMALL_INTEGER_EXT, 1, etf.SMALL_INTEGER_EXT, 2]),
    "strings_64k": bytes([etf.STRING_EXT]) + struct.pack(">H", 65535) + b"s" * 65535,
    "strings_1": bytes([etf.STRING_EXT, 0, 1]) + b"s",
    "binaries_empty": bytes([etf.BINARY_EXT]) + _u32(0),
    "binaries_1k": bytes([etf.BINARY_EXT]) + _u32(1024) + b"b" * 1024,
    "bit_binaries": bytes([etf.BIT_BINARY_EXT]) + _u32(1) + b"\x03\xe0",
    "big_ints": bytes([etf.SMALL_BIG_EXT, 9, 0]) + b"\xff" * 9,
    "pids": bytes([etf.NEW_PID_EXT]) + _SMALL_NODE + b"\0" * 12,
    "refs": bytes([etf.NEWER_REFERENCE_EXT, 0, 5]) + _SMALL_NODE + b"\0" * 24,
    "ports": bytes([etf.V4_PORT_EXT]) + _SMALL_NODE + b"\0" * 12,
    "exports": bytes([etf.EXPORT_EXT]) + _SMALL_NODE + _SMALL_NODE + bytes([etf.SMALL_INTEGER_EXT, 1]),
    "funs": bytes([etf.NEW_FUN_EXT]) + _u32(8) + b"\0" * 4,
    "maps": bytes([etf.MAP_EXT]) + _u32(1) + bytes([etf.INTEGER_EXT]) + _u32(99) + b"j",
    "improper_lists": bytes([etf.LIST_EXT]) + _u32(1) + b"j" + bytes([etf.SMALL_INTEGER_EXT, 1]),
    "map_with_list_keys": bytes([etf.MAP_EXT]) + _u32(1) + bytes([etf.STRING_EXT, 0, 1]) + b"k" + b"j",
}


@pytest.mark.parametrize("shape", sorted(CHEAP_ON_THE_WIRE))
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "compressed"])
def test_the_budget_covers_what_a_decode_allocates(shape, compressed):
    """Far more elements of each shape than a 4 MB budget holds (each is charged at
    least its list slot): refused, and the measured allocation stays within it."""
    element = CHEAP_ON_THE_WIRE[shape]
    budget = 4 << 20
    assert etf.binary_to_term(V + _list(3, element), max_bytes=budget) is not None
    count = min(budget // 16 + 1, (48 << 20) // len(element))
    body = _list(count, element)
    data = _compressed(body, level=1) if compressed else V + body
    assert _charges_cover(data, budget, "%s x%d" % (shape, count)), "not refused"


def test_the_budget_counts_the_inflated_bytes():
    data = _compressed(bytes([etf.BINARY_EXT]) + _u32(3 << 20) + b"b" * (3 << 20))
    with pytest.raises(etf.TermError, match="memory"):
        etf.binary_to_term(data, max_bytes=2 << 20)
    assert len(etf.binary_to_term(data, max_bytes=8 << 20)) == 3 << 20


def test_a_passed_deadline_stops_a_long_decode():
    data = V + _list(200000, bytes([etf.SMALL_INTEGER_EXT, 1]))
    start = time.process_time()
    with pytest.raises(etf.TermTimeout):
        etf.binary_to_term(data, deadline=time.monotonic() - 1)
    assert time.process_time() - start < 0.1
    assert len(etf.binary_to_term(data, deadline=time.monotonic() + 60)) == 200000


def test_a_passed_deadline_stops_inflating():
    data = _compressed(b"m" + b"\0" * (32 << 20))
    start = time.process_time()
    with pytest.raises(etf.TermTimeout):
        etf.binary_to_term(data, deadline=time.monotonic() - 1)
    assert time.process_time() - start < 0.1


@pytest.mark.parametrize("levels, per_level", [(512, 1000), (500, 4000)])
def test_list_tails_are_joined_in_linear_time(levels, per_level):
    """A list written as ``levels`` tail segments: concatenated level by level it took
    seconds (quadratic); appended in place it is as quick as one flat list."""
    chain = _compressed(b"".join(bytes([etf.LIST_EXT]) + _u32(per_level)
                                 + bytes([etf.SMALL_INTEGER_EXT, 7]) * per_level
                                 for dummy in range(levels)) + b"j", level=9)
    flat = _compressed(_list(levels * per_level, bytes([etf.SMALL_INTEGER_EXT, 7])), level=9)
    assert len(chain) < 12000  # a few kilobytes on the wire
    times = []
    for data in (flat, chain):
        start = time.process_time()
        assert etf.binary_to_term(data) == [7] * (levels * per_level)
        times.append(time.process_time() - start)
    assert times[1] < 2 * times[0] + 0.05, "flat %.3f s, chained %.3f s" % tuple(times)


def test_a_tail_chain_deeper_than_max_depth_is_still_refused():
    """Each tail segment still counts one level, as when they were nested calls."""
    segment = bytes([etf.LIST_EXT]) + _u32(1) + b"j"
    assert etf.binary_to_term(V + segment * etf.MAX_DEPTH + b"j") == [[]] * etf.MAX_DEPTH
    with pytest.raises(etf.TermError, match="nested"):
        etf.binary_to_term(V + segment * (etf.MAX_DEPTH + 1) + b"j")


# -- rendering: format_term and what the modules return

def assert_renders(term, limit=400):
    """format_term: valid text within the limit, quickly, and as JSON too."""
    start = time.process_time()
    text = etf.format_term(term, limit)
    assert time.process_time() - start < CALL_CPU_BOUND
    assert isinstance(text, str) and len(text) <= limit + 3
    text.encode("utf-8")  # no lone surrogates
    json.loads(json.dumps(text))
    return text


def assert_module_helpers(term):
    """What the modules make of an answer: DistError, or small JSON-serialisable values."""
    try:
        names = erlang_node.node_list(term, "erlang:nodes()", "x@h")
        assert all(isinstance(n, str) for n in names) and len(names) <= erlang_node.MAX_NODES
        json.dumps(names)
    except erldist.DistError as exc:
        assert exc.reason == "rpc_error" and len(str(exc)) < 1000
    for value in (erlang_node.short_text(term), ejabberd.admin_result(term),
                  ejabberd.admin_result((etf.Atom("error"), term))):
        assert len(json.dumps(value)) < 13 * erlang_node.MAX_TEXT  # \\uXXXX pairs at worst


@fuzz(300)
@given(TERMS)
@example([])
@example(1 << 20000)
@example((etf.Atom("error"), -(1 << 50000)))
@example([etf.Atom("a@b"), 1 << 14500])
@example([0xD800, 0xDFFF])
@example(etf.Atom("a\nb\x00"))
def test_any_term_renders_within_bounds(term):
    assert_renders(term)
    assert_renders(term, 20)
    assert_module_helpers(term)


@fuzz(300)
@given(st.one_of(mutated_encodings(), tag_soup(), framed()))
def test_anything_decoded_renders_within_bounds(data):
    result = decode_checked(data)
    if result is not REFUSED:
        assert_renders(result)
        assert_module_helpers(result)


def _deep(kind, levels):
    term = etf.Atom("core")
    for dummy in range(levels):
        if kind == "list":
            term = [term]
        elif kind == "tuple":
            term = (term, 1)
        elif kind == "map":
            term = {etf.Atom("k"): term}
        elif kind == "improper":
            term = etf.ImproperList([1], term)
        else:
            term = etf.NativeRecord("m", "r", True, [("f", term)])
    return term


@pytest.mark.parametrize("levels", [330, etf.MAX_DEPTH, 100000])
@pytest.mark.parametrize("kind", ["list", "tuple", "map", "improper", "record"])
def test_deep_terms_render_without_recursion(kind, levels):
    text = _no_recursion_error(assert_renders, _deep(kind, levels))
    assert text.endswith("...")


@pytest.mark.parametrize("term", [
    list(range(2000000)),
    tuple(range(2000000)),
    {k: k for k in range(300000)},
    etf.MapPairs([([k], k) for k in range(100000)]),
    b"\xff" * (32 << 20),
    "x" * (32 << 20),
    [ord("a")] * 3000000,
    etf.Fun(etf.NEW_FUN_EXT, b"\0" * (8 << 20)),
    etf.BitBinary(b"\x80" * (8 << 20), 1),
], ids=["list", "tuple", "map", "map_pairs", "binary", "str", "charlist", "fun", "bits"])
def test_large_terms_render_in_bounded_time(term):
    assert assert_renders(term).endswith("...") or isinstance(term, (etf.Fun, etf.BitBinary))


def test_decoded_deep_and_large_structures_render():
    deep = etf.binary_to_term(V + bytes([etf.LIST_EXT]) + _u32(1) + DEEP_BODIES["tuple"](500)
                              + b"j")
    wide = etf.binary_to_term(_compressed(_list(500000, bytes([etf.SMALL_INTEGER_EXT, 200]))))
    big = etf.binary_to_term(V + bytes([etf.LARGE_BIG_EXT]) + _u32(20000) + b"\0" + b"\xff" * 20000)
    for term in (deep, wide, big):
        assert_renders(term)
        assert_module_helpers(term)
    assert etf.format_term(big) == "<160000-bit integer>"


def test_threads_decoding_deep_terms_at_once_keep_their_stack():
    """The recursion limit is raised for the coder while any thread uses it: one
    thread finishing must not lower it under another one that is deep inside a term."""
    import threading  # pylint: disable=import-outside-toplevel
    deep = V + DEEP_BODIES["tuple"](etf.MAX_DEPTH - 1)
    shallow = etf.term_to_binary([1, 2, 3])
    limit = sys.getrecursionlimit()
    errors = []

    def work(data):
        try:
            for dummy in range(150):
                etf.binary_to_term(data)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(deep if i % 2 else shallow,))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert sys.getrecursionlimit() == limit
