# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What any Erlang node answers (its OTP release, the nodes it is connected to), and the
checks of such answers, over the bundled client.

Every answer is checked for its shape and size before it goes into a module
result: a node (or something posing as one) that answers oddly gives a
DistError, never an exception or a huge result.  Apart from ejabberd.py so that
the erlang_* modules, made for any Erlang node, do not compile ejabberd's
questions on every run (AnsiballZ runs modules from source).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom, as_text, format_term

# More node names than any cluster has: a longer answer is not a node list.
MAX_NODES = 10000
# Characters kept of a text a module returns (a version, a message from ejabberd).
MAX_TEXT = 2000


def node_list(term, what, node):
    """The sorted node names in ``term``, an answer to ``what`` from ``node``."""
    if not isinstance(term, list) or len(term) > MAX_NODES \
            or not all(isinstance(n, Atom) for n in term):
        raise erldist.DistError('rpc_error', '%s on %s returned %s, not a list of node names'
                                % (what, node, format_term(term, 200)))
    return sorted(str(n) for n in term)


def short_text(term, limit=MAX_TEXT):
    """A text answer (charlist, binary, atom) as ``str``, cut at ``limit``; None if
    the term is not text."""
    if isinstance(term, list) and len(term) > limit:
        term = term[:limit + 1]
    text = as_text(term)
    if text is None:
        return None
    text = text.encode('utf-8', 'replace').decode('utf-8')  # no lone surrogates in results
    return text if len(text) <= limit else text[:limit] + '...'


def visible_nodes(conn, timeout=None):
    """``erlang:nodes()``: the node's visible connected nodes, sorted."""
    return node_list(conn.rpc('erlang', 'nodes', [], timeout), 'erlang:nodes()', conn.node)


def otp_release(conn, timeout=None):
    """``erlang:system_info(otp_release)``: the node's OTP release ("27")."""
    return short_text(conn.rpc('erlang', 'system_info', [Atom('otp_release')], timeout), 200)
