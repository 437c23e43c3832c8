# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rendering of Erlang terms for messages (:func:`etf.format_term`).

Kept apart from etf.py because only error messages need it: a module run that
succeeds never imports it, so it is not compiled (under AnsiballZ, modules run
from source, compiled on every run).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import itertools

from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import (
    Atom, BitBinary, Export, Fun, ImproperList, MapPairs, NativeRecord, Pid, Port, Reference, as_text)

# Integers up to this many bits are written out; longer ones are only described
# (str() of a huge int is slow, and refused past 4300 digits since Python 3.11).
_MAX_INT_BITS = 3000


class _Lit(str):
    """Punctuation queued between the parts of a container while rendering."""

    __slots__ = ()


def format_term(term, limit=400):
    """A short Erlang-like rendering of ``term`` for messages: at most ``limit``
    characters, then ``...``.

    Iterative (depth costs no stack) and lazy (no part beyond the limit is
    looked at), so any term a peer can send renders quickly into valid text.
    """
    out, used = [], 0
    todo = [term]
    while todo:
        item = todo.pop()
        if type(item) is _Lit:  # pylint: disable=unidiomatic-typecheck
            text = item
        else:
            text, parts = _render(item, limit - used)
            todo.extend(reversed(parts))
        out.append(text)
        used += len(text)
        if used > limit:
            return ''.join(out)[:limit] + '...'
    return ''.join(out)


def _printable(text):
    return text if text.isprintable() else repr(text)[1:-1]


def _int_text(value):
    if value.bit_length() <= _MAX_INT_BITS:
        return str(value)
    return '<%s%d-bit integer>' % ('-' if value < 0 else '', value.bit_length())


def _seq(groups, room, close, sep=','):
    """The parts of a container: groups of parts between separators, at most
    ``room + 1`` groups (each renders at least one character: more cannot fit)."""
    parts = []
    for group in itertools.islice(groups, room + 1):
        if parts:
            parts.append(_Lit(sep))
        parts.extend(group)
    parts.append(_Lit(close))
    return parts


def _items(term):
    return ([item] for item in term)


def _pairs(pairs):
    return ([key, _Lit('=>'), value] for key, value in pairs)


def _render(term, room):  # pylint: disable=too-many-return-statements,too-many-branches
    """``(opening text, parts that follow)`` of one term; ``room`` is the space left."""
    if isinstance(term, bool):
        return ('true' if term else 'false'), []
    if isinstance(term, Atom):
        return _printable(str(term[:room + 1])), []
    if isinstance(term, int):
        return _int_text(term), []
    if isinstance(term, float):
        return repr(term), []
    if isinstance(term, BitBinary):
        return '<<%d bytes, %d bits in the last>>' % (len(term), term.bits), []
    if isinstance(term, (bytes, bytearray)):
        if not term:
            return '<<>>', []
        head = bytes(term[:room + 1])
        text = head.decode('utf-8', 'replace')
        return ('"%s"' % text if text.isprintable() else repr(head)), []
    if isinstance(term, str):
        return '"%s"' % _printable(term[:room + 1]), []
    if isinstance(term, ImproperList):
        return '[', _seq(_items(term), room, '|') + [term.tail, _Lit(']')]
    if isinstance(term, MapPairs):
        return '#{', _seq(_pairs(term), room, '}')
    if isinstance(term, list):
        text = as_text(term[:room + 1]) if term else None
        if text is not None and text.isprintable():
            return '"%s"' % text, []
        return '[', _seq(_items(term), room, ']')
    if isinstance(term, tuple):
        return '{', _seq(_items(term), room, '}')
    if isinstance(term, dict):
        return '#{', _seq(_pairs(term.items()), room, '}')
    if isinstance(term, (Pid, Port, Reference)):
        node = _printable(term.node[:room + 1])
        if isinstance(term, Pid):
            return '<%s.%d.%d>' % (node, term.id, term.serial), []
        if isinstance(term, Port):
            return '#Port<%s.%d>' % (node, term.id), []
        return '#Ref<%s.%s>' % (node, '.'.join(str(i) for i in term.ids)), []
    if isinstance(term, Export):
        return 'fun ', [term.module, _Lit(':'), term.function, _Lit('/'), term.arity]
    if isinstance(term, Fun):
        return '#Fun<%d bytes>' % len(term.raw), []
    if isinstance(term, NativeRecord):
        fields = ([_Lit('%s=' % _printable(key)), value] for key, value in term.fields)
        return '#%s:%s{' % (_printable(term.module), _printable(term.name)), \
            _seq(fields, room, '}')
    return '<%s>' % type(term).__name__, []
