# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Erlang external term format: a bounded decoder and the encoder requests need.

Python types: atoms are :class:`Atom` (a ``str``), ``true``/``false`` are ``bool``,
integers are ``int``, floats ``float``, tuples ``tuple``, lists ``list`` (an
improper list is :class:`ImproperList`), binaries ``bytes`` (:class:`BitBinary`
when the last byte is partial), maps ``dict`` (:class:`MapPairs` when a key is
not hashable), strings (STRING_EXT) lists of ``int``.  Pids, ports, references,
funs and exports are small value classes; funs stay opaque.

Every length read from the wire is checked against the bytes that are really
there before anything is allocated, nesting depth is capped, compressed terms
may not inflate past a limit, the Python objects one decode makes are counted
against a budget in bytes, and a decode given a deadline stops when it passes,
so a hostile peer can only get a :class:`TermError`.

:func:`format_term` renders any term for a message, within a size limit
(etf_format.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import math
import operator
import re
import struct
import sys
import threading
import time
import zlib

VERSION = 131

# Tags, named as in erts/emulator/beam/external.h.
NATIVE_RECORD_EXT = 67  # OTP 29+ (EEP 79)
NEW_FLOAT_EXT = 70
BIT_BINARY_EXT = 77
COMPRESSED = 80
ATOM_CACHE_REF = 82
NEW_PID_EXT = 88
NEW_PORT_EXT = 89
NEWER_REFERENCE_EXT = 90
SMALL_INTEGER_EXT = 97
INTEGER_EXT = 98
FLOAT_EXT = 99
ATOM_EXT = 100
REFERENCE_EXT = 101
PORT_EXT = 102
PID_EXT = 103
SMALL_TUPLE_EXT = 104
LARGE_TUPLE_EXT = 105
NIL_EXT = 106
STRING_EXT = 107
LIST_EXT = 108
BINARY_EXT = 109
SMALL_BIG_EXT = 110
LARGE_BIG_EXT = 111
NEW_FUN_EXT = 112
EXPORT_EXT = 113
NEW_REFERENCE_EXT = 114
SMALL_ATOM_EXT = 115
MAP_EXT = 116
FUN_EXT = 117
ATOM_UTF8_EXT = 118
SMALL_ATOM_UTF8_EXT = 119
V4_PORT_EXT = 120
LOCAL_EXT = 121

MAX_DEPTH = 512
DEFAULT_MAX_INFLATED = 64 * 1024 * 1024
# Memory one decode may take, in bytes of Python objects (inflated data included):
# a few compressed bytes can stand for millions of objects.  Each part is charged
# what CPython (64-bit) really allocates for it, a little more where it varies.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_COST_SLOT = 8             # a pointer in a tuple
_COST_LIST_SLOT = 16       # a pointer in a list, with room for its growth
_COST_INT = 32
_COST_OBJECT = 80          # a small object with slots (Pid, Port, ...)
_COST_DICT_OBJECT = 448    # an object with a __dict__ (ImproperList, BitBinary)
_COST_MAP_ENTRY = 256      # the pair, the hash count and the dict entry
# Parts decoded between two looks at the clock.
_CLOCK_EVERY = 4096
# Inflate in steps this large, looking at the clock in between.
_INFLATE_STEP = 1 << 16
# Python frames per nesting level of the recursive coder, with room to spare.
_FRAMES_PER_LEVEL = 4
_FLOAT_TEXT = re.compile(r'^[-+]?[0-9]+\.[0-9]+(e[-+]?[0-9]+)?$')
# Keys with one hash value a map may have before it is kept as MapPairs: a dict
# of colliding keys takes quadratic time to build (hash flooding).
_MAX_SAME_HASH = 8


class TermError(ValueError):
    """The bytes are not a valid (or not an acceptable) external term."""


class TermTimeout(TermError):
    """Decoding did not finish before the deadline it was given."""


class Atom(str):
    """An Erlang atom."""

    __slots__ = ()

    def __repr__(self):
        return 'Atom(%s)' % str.__repr__(self)


class ImproperList(list):
    """A list whose tail is not ``[]``; the tail is in ``.tail``."""

    def __init__(self, items, tail):
        super(ImproperList, self).__init__(items)
        self.tail = tail

    def __eq__(self, other):
        return (isinstance(other, ImproperList) and list.__eq__(self, other)
                and self.tail == other.tail)

    def __ne__(self, other):
        return not self == other

    __hash__ = None


class BitBinary(bytes):
    """A bitstring: ``bits`` (1..8) bits of the last byte are used."""

    def __new__(cls, data, bits):
        obj = super(BitBinary, cls).__new__(cls, data)
        obj.bits = bits
        return obj

    def __eq__(self, other):
        return (isinstance(other, BitBinary) and bytes.__eq__(self, other)
                and self.bits == other.bits)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((bytes(self), self.bits))


class MapPairs(list):
    """A map with a key Python cannot hash, kept as a list of (key, value)."""


class _Value(object):
    """Base for small immutable, comparable value classes."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._fields = operator.attrgetter(*cls.__slots__)  # the key, read in C

    def _key(self):
        return self._fields(self)

    def __eq__(self, other):
        return type(self) is type(other) and self._key() == other._key()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((type(self).__name__,) + self._key())

    def __repr__(self):
        return '%s(%s)' % (type(self).__name__,
                           ', '.join('%s=%r' % (n, getattr(self, n)) for n in self.__slots__))


class Pid(_Value):
    __slots__ = ('node', 'id', 'serial', 'creation')

    def __init__(self, node, id, serial, creation):  # pylint: disable=redefined-builtin
        self.node, self.id, self.serial, self.creation = Atom(node), id, serial, creation


class Port(_Value):
    __slots__ = ('node', 'id', 'creation')

    def __init__(self, node, id, creation):  # pylint: disable=redefined-builtin
        self.node, self.id, self.creation = Atom(node), id, creation


class Reference(_Value):
    __slots__ = ('node', 'creation', 'ids')

    def __init__(self, node, creation, ids):
        self.node, self.creation, self.ids = Atom(node), creation, tuple(ids)


class Export(_Value):
    __slots__ = ('module', 'function', 'arity')

    def __init__(self, module, function, arity):
        self.module, self.function, self.arity = module, function, arity


class NativeRecord(_Value):
    """An OTP 29+ native record: ``fields`` is a tuple of (name, value) pairs."""

    __slots__ = ('module', 'name', 'exported', 'fields')

    def __init__(self, module, name, exported, fields):
        self.module, self.name, self.exported = Atom(module), Atom(name), bool(exported)
        self.fields = tuple((Atom(k), v) for k, v in fields)


class Fun(_Value):
    """A fun, kept opaque: ``raw`` is its encoding after the tag byte."""

    __slots__ = ('tag', 'raw')

    def __init__(self, tag, raw):
        self.tag, self.raw = tag, bytes(raw)


# --------------------------------------------------------------------------- decoding

class _Reader(object):
    """Cursor over a memoryview; every read is checked against the end, every
    object made is charged to the budget, and the clock is read now and then."""

    __slots__ = ('data', 'pos', 'max_inflated', 'budget', 'deadline', 'ticks')

    def __init__(self, data, max_inflated, budget=DEFAULT_MAX_BYTES, deadline=None):
        self.data = data
        self.pos = 0
        self.max_inflated = max_inflated
        self.budget = budget
        self.deadline = deadline
        self.ticks = _CLOCK_EVERY

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, count):
        if count < 0 or count > len(self.data) - self.pos:
            raise TermError('term truncated: wanted %d bytes at offset %d, %d left'
                            % (count, self.pos, self.remaining()))
        start = self.pos
        self.pos += count
        return self.data[start:self.pos]

    def _unpack(self, fmt, size):
        if size > len(self.data) - self.pos:
            raise TermError('term truncated: wanted %d bytes at offset %d, %d left'
                            % (size, self.pos, self.remaining()))
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def peek(self):
        return self.data[self.pos] if self.pos < len(self.data) else None

    def u8(self):
        pos = self.pos
        try:
            value = self.data[pos]
        except IndexError:
            raise TermError('term truncated: wanted 1 byte at offset %d' % pos)
        self.pos = pos + 1
        return value

    def u16(self):
        return self._unpack('>H', 2)

    def u32(self):
        return self._unpack('>I', 4)

    def i32(self):
        return self._unpack('>i', 4)

    def u64(self):
        return self._unpack('>Q', 8)

    def count(self, n, min_size):
        """A declared element count, refused if the bytes left cannot hold it."""
        if n * min_size > self.remaining():
            raise TermError('declared %d elements at offset %d but only %d bytes left'
                            % (n, self.pos, self.remaining()))
        return n

    def spend(self, nbytes):
        """Charge the memory of what is about to be made; refuse past the budget."""
        self.budget -= nbytes
        if self.budget < 0:
            raise TermError('term would take more memory than allowed (%d bytes at offset %d '
                            'are over the budget): refused' % (-self.budget, self.pos))

    def tick(self):
        """After _CLOCK_EVERY parts (counted down by _decode): check the deadline."""
        self.ticks = _CLOCK_EVERY
        self.check_clock()

    def check_clock(self):
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TermTimeout('decoding stopped at offset %d: the time allowed ran out'
                              % self.pos)


def _atom(text):
    if text == 'true':
        return True
    if text == 'false':
        return False
    return Atom(text)


def _decode_atom(r, depth):
    """An atom in a place where only an atom is allowed (node names, modules)."""
    value = _decode(r, depth + 1)
    if isinstance(value, bool):
        return Atom('true' if value else 'false')
    if not isinstance(value, Atom):
        raise TermError('expected an atom at offset %d' % r.pos)
    return value


def _decode_int(r, depth):
    value = _decode(r, depth + 1)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TermError('expected an integer at offset %d' % r.pos)
    return value


def _big(r, n):
    sign = r.u8()
    r.spend(_COST_INT + 2 * n)
    value = int.from_bytes(r.take(n), 'little')
    return -value if sign else value


def _text(raw, encoding, r):
    r.spend(112 + 2 * len(raw))
    try:
        return str(raw, encoding)
    except UnicodeDecodeError:
        raise TermError('atom text is not valid %s' % encoding)


def _decode_fun_ext(r, depth):
    # Old FUN_EXT (OTP < 23 senders): NumFree, Pid, Module, Index, Uniq, Free vars.
    start = r.pos
    num_free = r.count(r.u32(), 1)
    _decode(r, depth + 1)
    _decode_atom(r, depth)
    _decode_int(r, depth)
    _decode_int(r, depth)
    for dummy in range(num_free):
        _decode(r, depth + 1)
    r.spend(_COST_OBJECT + r.pos - start)
    return Fun(FUN_EXT, r.data[start:r.pos])


def _decode_new_fun(r, depth):
    start = r.pos
    size = r.u32()
    if size < 4:
        raise TermError('NEW_FUN_EXT size %d is too small' % size)
    r.take(size - 4)
    r.spend(_COST_OBJECT + size)
    return Fun(NEW_FUN_EXT, r.data[start:r.pos])


def _decode_native_record(r, depth):
    # 67 | field count:32 | exported:8 | module | name | field-name atoms | values
    count = r.count(r.u32(), 2)
    r.spend(_COST_OBJECT + count * (_COST_OBJECT + 2 * _COST_SLOT))
    exported = r.u8()
    module, name = _decode_atom(r, depth), _decode_atom(r, depth)
    keys = [_decode_atom(r, depth) for dummy in range(count)]
    values = [_decode(r, depth + 1) for dummy in range(count)]
    return NativeRecord(module, name, exported, zip(keys, values))


def _decode_map(r, depth):
    arity = r.count(r.u32(), 2)
    r.spend(_COST_DICT_OBJECT + arity * _COST_MAP_ENTRY)
    pairs = [(_decode(r, depth + 1), _decode(r, depth + 1)) for dummy in range(arity)]
    try:
        per_hash = {}
        for key, dummy in pairs:
            per_hash[hash(key)] = per_hash.get(hash(key), 0) + 1
    except TypeError:  # a list or map as key
        return MapPairs(pairs)
    if per_hash and max(per_hash.values()) > _MAX_SAME_HASH:
        return MapPairs(pairs)
    result = dict(pairs)
    if len(result) == arity:
        return result
    # Erlang keys that differ but are equal in Python (1 and 1.0, true and 1), or
    # a real duplicate, which Erlang itself refuses.
    if len(set(_encode_key(key) for key, dummy in pairs)) != arity:
        raise TermError('map has a duplicate key')
    return MapPairs(pairs)


def _encode_key(key):
    out = bytearray()
    _encode(key, out, 0)
    return bytes(out)


def _decode_list(r, depth):
    # A tail that is itself a list continues the list, as in Erlang: appended
    # in place (linear), each continuation one level deeper as if nested.
    items = []
    append = items.append
    while True:
        length = r.count(r.u32(), 1)
        r.spend(_COST_LIST_SLOT * length)
        for dummy in range(length):
            append(_decode(r, depth + 1))
        tag = r.peek()
        if tag == NIL_EXT:
            r.pos += 1
            return items
        if tag == STRING_EXT:
            r.pos += 1
            raw = r.take(r.u16())
            r.spend(_COST_LIST_SLOT * len(raw))
            items.extend(raw)
            return items
        if tag != LIST_EXT:
            break
        r.pos += 1
        depth += 1
        if depth > MAX_DEPTH:
            raise TermError('term nested deeper than %d levels' % MAX_DEPTH)
    tail = _decode(r, depth + 1)
    r.spend(_COST_DICT_OBJECT)
    return ImproperList(items, tail)


def _decode_float_ext(r):
    raw = bytes(r.take(31)).split(b'\0', 1)[0].decode('latin-1')
    if not _FLOAT_TEXT.match(raw):
        raise TermError('FLOAT_EXT %r is not a number' % raw)
    return _finite(float(raw))


def _finite(value):
    if math.isnan(value) or math.isinf(value):
        raise TermError('Erlang has no NaN or infinite floats')
    return value


def _bits(data, bits):
    """A bitstring, with the unused low bits of the last byte zeroed as erl does."""
    if bits == 8:
        return bytes(data)
    return BitBinary(bytes(data[:-1]) + bytes([data[-1] & (0xFF << (8 - bits)) & 0xFF]), bits)


def _decode(r, depth):  # pylint: disable=too-many-return-statements,too-many-branches
    if depth > MAX_DEPTH:
        raise TermError('term nested deeper than %d levels' % MAX_DEPTH)
    r.ticks -= 1  # r.tick(), inline: this runs once per part
    if r.ticks <= 0:
        r.tick()
    tag = r.u8()
    if tag == SMALL_INTEGER_EXT:
        return r.u8()  # CPython keeps one object per small int: nothing to charge
    if tag == INTEGER_EXT:
        r.spend(_COST_INT)
        return r.i32()
    if tag in (SMALL_ATOM_UTF8_EXT, SMALL_ATOM_EXT):
        raw = r.take(r.u8())
        return _atom(_text(raw, 'utf-8' if tag == SMALL_ATOM_UTF8_EXT else 'latin-1', r))
    if tag in (ATOM_UTF8_EXT, ATOM_EXT):
        text = _text(r.take(r.u16()), 'utf-8' if tag == ATOM_UTF8_EXT else 'latin-1', r)
        if len(text) > 255:
            raise TermError('atom longer than 255 characters')
        return _atom(text)
    if tag in (SMALL_TUPLE_EXT, LARGE_TUPLE_EXT):
        arity = r.count(r.u8() if tag == SMALL_TUPLE_EXT else r.u32(), 1)
        r.spend(56 + _COST_SLOT * arity)
        return tuple([_decode(r, depth + 1) for dummy in range(arity)])
    if tag == NIL_EXT:
        r.spend(64)
        return []
    if tag == STRING_EXT:
        raw = r.take(r.u16())
        r.spend(64 + _COST_LIST_SLOT * len(raw))
        return list(raw)
    if tag == LIST_EXT:
        r.spend(64)
        return _decode_list(r, depth)
    if tag == BINARY_EXT:
        raw = r.take(r.u32())
        r.spend(40 + len(raw))
        return bytes(raw)
    if tag == BIT_BINARY_EXT:
        length = r.u32()
        bits = r.u8()
        if length == 0 and bits == 0:
            return b''
        if not 1 <= bits <= 8 or length == 0:
            raise TermError('BIT_BINARY_EXT with %d bits in the last of %d bytes' % (bits, length))
        raw = r.take(length)
        r.spend(_COST_DICT_OBJECT + 2 * length)
        return _bits(raw, bits)
    if tag == MAP_EXT:
        return _decode_map(r, depth)
    if tag == NEW_FLOAT_EXT:
        r.spend(_COST_INT)
        return _finite(struct.unpack('>d', r.take(8))[0])
    if tag == FLOAT_EXT:
        r.spend(_COST_INT)
        return _decode_float_ext(r)
    if tag == SMALL_BIG_EXT:
        return _big(r, r.u8())
    if tag == LARGE_BIG_EXT:
        return _big(r, r.u32())
    if tag in (NEW_PID_EXT, PID_EXT, V4_PORT_EXT, NEW_PORT_EXT, PORT_EXT, NEWER_REFERENCE_EXT,
               NEW_REFERENCE_EXT, REFERENCE_EXT, EXPORT_EXT):
        r.spend(_COST_OBJECT + 3 * _COST_INT)
    if tag == NEW_PID_EXT:
        return Pid(_decode_atom(r, depth), r.u32(), r.u32(), r.u32())
    if tag == PID_EXT:
        return Pid(_decode_atom(r, depth), r.u32(), r.u32(), r.u8())
    if tag == V4_PORT_EXT:
        return Port(_decode_atom(r, depth), r.u64(), r.u32())
    if tag == NEW_PORT_EXT:
        return Port(_decode_atom(r, depth), r.u32(), r.u32())
    if tag == PORT_EXT:
        return Port(_decode_atom(r, depth), r.u32(), r.u8())
    if tag in (NEWER_REFERENCE_EXT, NEW_REFERENCE_EXT):
        words = r.u16()
        if words > 5:
            raise TermError('reference with %d id words (at most 5)' % words)
        r.spend(words * (_COST_INT + 2 * _COST_SLOT))
        node = _decode_atom(r, depth)
        creation = r.u32() if tag == NEWER_REFERENCE_EXT else r.u8()
        return Reference(node, creation, [r.u32() for dummy in range(words)])
    if tag == REFERENCE_EXT:
        node = _decode_atom(r, depth)
        ref_id = r.u32()
        return Reference(node, r.u8(), [ref_id])
    if tag == EXPORT_EXT:
        return Export(_decode_atom(r, depth), _decode_atom(r, depth), _decode_int(r, depth))
    if tag == NEW_FUN_EXT:
        return _decode_new_fun(r, depth)
    if tag == NATIVE_RECORD_EXT:
        return _decode_native_record(r, depth)
    if tag == FUN_EXT:
        return _decode_fun_ext(r, depth)
    if tag == ATOM_CACHE_REF:
        raise TermError('ATOM_CACHE_REF received, but the atom cache was not negotiated')
    if tag == LOCAL_EXT:
        raise TermError('LOCAL_EXT can only be decoded by the node that made it')
    if tag == COMPRESSED:
        raise TermError('COMPRESSED is only allowed right after the version byte')
    raise TermError('unknown term tag %d at offset %d' % (tag, r.pos - 1))


def _inflate(r):
    size = r.u32()
    if size > r.max_inflated:
        raise TermError('compressed term claims %d bytes, more than the %d allowed'
                        % (size, r.max_inflated))
    r.spend(size)
    # A step at a time (input and output): never more than the claim in memory,
    # nothing allocated for a claim the data does not back, and the deadline is
    # seen between steps.
    out = bytearray()
    filled = 0
    inflater = zlib.decompressobj()
    source = r.take(r.remaining())
    fed = 0
    pending = b''
    try:
        while not inflater.eof:
            if not pending and fed < len(source):
                pending = source[fed:fed + _INFLATE_STEP]
                fed += len(pending)
            chunk = inflater.decompress(pending, min(_INFLATE_STEP, size + 1 - filled))
            if not chunk and not pending:
                break  # all fed, nothing more comes out: truncated
            if filled + len(chunk) > size:
                raise TermError('compressed term inflates to more, not the %d bytes it claims'
                                % size)
            out += chunk
            filled += len(chunk)
            pending = inflater.unconsumed_tail
            r.check_clock()
    except zlib.error as exc:
        raise TermError('compressed term is corrupt: %s' % exc)
    if filled != size or not inflater.eof:
        raise TermError('compressed term inflates to %d, not the %d bytes it claims'
                        % (filled, size))
    return memoryview(out)


def decode_term(data, offset=0, max_inflated=DEFAULT_MAX_INFLATED, max_bytes=DEFAULT_MAX_BYTES,
                deadline=None):
    """Decode one versioned term from ``data[offset:]`` (any bytes-like object).

    Returns ``(term, end_offset)``.  A compressed term takes the rest of ``data``.
    ``max_bytes`` bounds the memory the result may take; ``deadline`` (a
    ``time.monotonic()`` value) the time, with :class:`TermTimeout`.
    Raises :class:`TermError` for anything malformed or over a limit.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast('B')
    r = _Reader(view, max_inflated, max_bytes, deadline)
    r.pos = offset
    if r.u8() != VERSION:
        raise TermError('term does not start with version byte 131')
    if r.peek() == COMPRESSED:
        r.pos += 1
        inner = _Reader(_inflate(r), max_inflated, r.budget, deadline)
        term = _decode_from(inner)
        if inner.remaining():
            raise TermError('%d stray bytes after the compressed term' % inner.remaining())
        return term, r.pos
    return _decode_from(r), r.pos


def _decode_from(r):
    start, budget = r.pos, r.budget

    def run():
        r.pos, r.budget = start, budget
        return _decode(r, 0)
    return _with_stack(run, r.remaining())


class _StackRoom(object):
    """The recursion limit, raised while any thread runs the coder and put back
    when the last one is done: a thread that finished first must not lower it
    under another one's feet."""

    def __init__(self):
        self.lock = threading.Lock()
        self.users = 0
        self.saved = None

    def base(self):
        """The limit when nobody has raised it (what a call can count on)."""
        return self.saved if self.users else sys.getrecursionlimit()

    def enter(self, needed):
        with self.lock:
            if not self.users:
                self.saved = sys.getrecursionlimit()
            self.users += 1
            if needed > sys.getrecursionlimit():
                sys.setrecursionlimit(needed)

    def leave(self):
        with self.lock:
            self.users -= 1
            if not self.users:
                sys.setrecursionlimit(self.saved)


_STACK_ROOM = _StackRoom()


# Frames a caller usually has on the stack already, below the coder.
_CALLER_FRAMES = 150


def _with_stack(run, levels=None):
    """``run()`` the recursive coder with stack for its levels: ``levels`` at most
    (a term cannot nest deeper than it has bytes), None if not known.

    A small term (or one of unknown depth) is first tried with the stack there is,
    as most are small; on RecursionError ``run`` goes once more, with the limit
    raised for MAX_DEPTH levels while it runs (``run`` must start afresh)."""
    room = min(MAX_DEPTH if levels is None else levels, MAX_DEPTH) * _FRAMES_PER_LEVEL + 50
    if levels is None or room + _CALLER_FRAMES < _STACK_ROOM.base():
        try:
            return run()
        except RecursionError:
            pass  # deeper than the stack there is: once more, with room made
    _STACK_ROOM.enter(_stack_depth() + MAX_DEPTH * _FRAMES_PER_LEVEL + 50)
    try:
        return run()
    except RecursionError:  # a deeper caller than planned for: still our error
        raise TermError('term nested too deeply')
    finally:
        _STACK_ROOM.leave()


def _stack_depth():
    frame, depth = sys._getframe(), 0  # pylint: disable=protected-access
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def binary_to_term(data, max_inflated=DEFAULT_MAX_INFLATED, max_bytes=DEFAULT_MAX_BYTES,
                   deadline=None):
    """Decode a whole binary holding exactly one versioned term (see decode_term)."""
    term, end = decode_term(data, 0, max_inflated, max_bytes, deadline)
    if end != len(data):
        raise TermError('%d stray bytes after the term' % (len(data) - end))
    return term


# --------------------------------------------------------------------------- encoding

def _encode_atom(text, out):
    raw = text.encode('utf-8')
    if len(raw) < 256:
        out += struct.pack('>BB', SMALL_ATOM_UTF8_EXT, len(raw))
    elif len(text) <= 255:
        out += struct.pack('>BH', ATOM_UTF8_EXT, len(raw))
    else:
        raise TermError('atom longer than 255 characters: %r...' % text[:20])
    out += raw


def _encode_int(value, out):
    if 0 <= value < 256:
        out += struct.pack('>BB', SMALL_INTEGER_EXT, value)
    elif -2 ** 31 <= value < 2 ** 31:
        out += struct.pack('>Bi', INTEGER_EXT, value)
    else:
        magnitude = abs(value)
        raw = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, 'little')
        if len(raw) < 256:
            out += struct.pack('>BB', SMALL_BIG_EXT, len(raw))
        else:
            out += struct.pack('>BI', LARGE_BIG_EXT, len(raw))
        out += struct.pack('>B', 1 if value < 0 else 0) + raw


def _encode(term, out, depth):  # pylint: disable=too-many-branches
    if depth > MAX_DEPTH:
        raise TermError('term nested deeper than %d levels' % MAX_DEPTH)
    if isinstance(term, bool):
        _encode_atom('true' if term else 'false', out)
    elif isinstance(term, Atom):
        _encode_atom(term, out)
    elif isinstance(term, int):
        _encode_int(term, out)
    elif isinstance(term, float):
        out += struct.pack('>Bd', NEW_FLOAT_EXT, _finite(term))
    elif isinstance(term, BitBinary):
        if not term or not 1 <= term.bits <= 8:
            raise TermError('a BitBinary needs at least one byte and 1-8 bits in the last')
        out += struct.pack('>BIB', BIT_BINARY_EXT, len(term), term.bits) + bytes(term)
    elif isinstance(term, (bytes, bytearray)):
        out += struct.pack('>BI', BINARY_EXT, len(term)) + bytes(term)
    elif isinstance(term, str):
        # A Python str is an Erlang string: a list of code points.
        _encode_list([ord(c) for c in term], [], out, depth)
    elif isinstance(term, tuple):
        if len(term) < 256:
            out += struct.pack('>BB', SMALL_TUPLE_EXT, len(term))
        else:
            out += struct.pack('>BI', LARGE_TUPLE_EXT, len(term))
        for item in term:
            _encode(item, out, depth + 1)
    elif isinstance(term, (dict, MapPairs)):
        pairs = term.items() if isinstance(term, dict) else term
        out += struct.pack('>BI', MAP_EXT, len(pairs))
        for key, value in pairs:
            _encode(key, out, depth + 1)
            _encode(value, out, depth + 1)
    elif isinstance(term, ImproperList):
        _encode_list(term, term.tail, out, depth)
    elif isinstance(term, list):
        _encode_list(term, [], out, depth)
    elif isinstance(term, Pid):
        out += struct.pack('>B', NEW_PID_EXT)
        _encode_atom(term.node, out)
        out += struct.pack('>III', term.id, term.serial, term.creation)
    elif isinstance(term, Port):
        out += struct.pack('>B', V4_PORT_EXT)
        _encode_atom(term.node, out)
        out += struct.pack('>QI', term.id, term.creation)
    elif isinstance(term, Reference):
        if len(term.ids) > 5:
            raise TermError('a reference has at most 5 id words')
        out += struct.pack('>BH', NEWER_REFERENCE_EXT, len(term.ids))
        _encode_atom(term.node, out)
        out += struct.pack('>I', term.creation)
        out += struct.pack('>%dI' % len(term.ids), *term.ids)
    elif isinstance(term, Export):
        out += struct.pack('>B', EXPORT_EXT)
        _encode_atom(term.module, out)
        _encode_atom(term.function, out)
        _encode_int(term.arity, out)
    elif isinstance(term, NativeRecord):
        out += struct.pack('>BIB', NATIVE_RECORD_EXT, len(term.fields), 1 if term.exported else 0)
        _encode_atom(term.module, out)
        _encode_atom(term.name, out)
        for key, dummy in term.fields:
            _encode_atom(key, out)
        for dummy, value in term.fields:
            _encode(value, out, depth + 1)
    elif isinstance(term, Fun):
        out += struct.pack('>B', term.tag) + term.raw
    else:
        raise TermError('cannot encode %s as an Erlang term' % type(term).__name__)


def _encode_list(items, tail, out, depth):
    if not items and tail == []:
        out.append(NIL_EXT)
        return
    if tail == [] and len(items) < 65536 and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 256 for i in items):
        out += struct.pack('>BH', STRING_EXT, len(items)) + bytes(items)
        return
    out += struct.pack('>BI', LIST_EXT, len(items))
    for item in items:
        _encode(item, out, depth + 1)
    _encode(tail, out, depth + 1)


def term_to_binary(term):
    """Encode ``term`` with the version byte, as ``erlang:term_to_binary/1`` does."""
    out = bytearray([VERSION])

    def run():
        del out[1:]
        _encode(term, out, 0)
    try:
        _with_stack(run)
    except (struct.error, OverflowError, UnicodeError) as exc:
        raise TermError('cannot encode %r: %s' % (type(term).__name__, exc))
    return bytes(out)


def as_text(term):
    """A string-like term (charlist, binary, atom) as ``str``; ``None`` otherwise."""
    if isinstance(term, bool):
        return None
    if isinstance(term, str):
        return str(term)
    if isinstance(term, (bytes, bytearray)) and not isinstance(term, BitBinary):
        return bytes(term).decode('utf-8', 'replace')
    if isinstance(term, list) and not isinstance(term, ImproperList) and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 0x10FFFF for i in term):
        return ''.join(chr(i) for i in term)
    return None


# --------------------------------------------------------------------------- rendering

def format_term(term, limit=400):
    """A short Erlang-like rendering of ``term`` for messages: at most ``limit``
    characters, then ``...`` (see etf_format.py)."""
    # Only error messages render terms: the renderer is imported (and, from an
    # AnsiballZ zip, compiled) when one is written, not on every module run.
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.xmpp.ejabberd.plugins.module_utils import etf_format
    return etf_format.format_term(term, limit)
