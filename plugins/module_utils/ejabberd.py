# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules ask an ejabberd node (its cluster, its Mnesia database), over the
bundled client; the questions any Erlang node answers are in erlang_node.py.

Every answer is checked for its shape and size before it goes into a module
result: a node (or something posing as one) that answers oddly gives a
DistError, never an exception or a huge result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import time

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.erlang_node import (
    node_list, short_text, visible_nodes)
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom, format_term

# Slow steps (a backup, a restore, stopping Mnesia) get this many times a query's time.
SLOW_FACTOR = 12


def cluster_view(conn, timeout=None):
    """The node's own view: ``running_nodes``, ``known_nodes``, ``stopped_nodes``.

    Raises DistError (``rpc_error`` when ejabberd is not running on the node).
    """
    try:
        running = node_list(conn.rpc('ejabberd_cluster', 'get_nodes', [], timeout),
                            'ejabberd_cluster:get_nodes()', conn.node)
        known = node_list(conn.rpc('ejabberd_cluster', 'get_known_nodes', [], timeout),
                          'ejabberd_cluster:get_known_nodes()', conn.node)
    except erldist.DistError as exc:
        if exc.reason != 'rpc_error':
            raise
        raise erldist.DistError('rpc_error', 'node %s answers, but ejabberd does not (is the '
                                'ejabberd application running there?): %s' % (conn.node, exc))
    stopped = sorted(set(known) - set(running))
    return dict(running_nodes=running, known_nodes=known, stopped_nodes=stopped)


def mnesia_view(conn, timeout=None):
    """Mnesia's own view of the cluster: ``db_nodes`` (the members of its schema),
    ``running_db_nodes`` (those it shares the database with now), and the node's
    ``connected_nodes`` (``erlang:nodes()``), each sorted. Answers while the ejabberd
    application is stopped or waiting for its tables."""
    def ask(what):
        return node_list(conn.rpc('mnesia', 'system_info', [Atom(what)], timeout),
                         'mnesia:system_info(%s)' % what, conn.node)
    return dict(db_nodes=ask('db_nodes'), running_db_nodes=ask('running_db_nodes'),
                connected_nodes=visible_nodes(conn, timeout))


def _seconds(conn, timeout, factor=1):
    """``timeout`` (default: the connection's own) times ``factor``."""
    return (conn.timeout if timeout is None else timeout) * factor


def mnesia_views_through(conn, view, timeout=None):
    """Mnesia's view of each member ``conn``'s node is connected to but does not run
    with (``view`` is its own :func:`mnesia_view`), asked through that node with
    ``rpc:call``: ``{name: {db_nodes, running_db_nodes}}``; a member that does not
    answer gets empty lists (its Mnesia is starting or stopping, not apart)."""
    views = {}
    for other in view['db_nodes']:
        if other == conn.node or other in view['running_db_nodes'] \
                or other not in view['connected_nodes']:
            continue
        theirs = {}
        for what in ('db_nodes', 'running_db_nodes'):
            answer = conn.rpc('rpc', 'call', [Atom(other), Atom('mnesia'), Atom('system_info'),
                                              [Atom(what)], int(_seconds(conn, timeout) * 1000)],
                              _seconds(conn, timeout, 2))
            try:
                theirs[what] = node_list(answer, 'mnesia:system_info(%s)' % what, other)
            except erldist.DistError:
                theirs[what] = []
        views[other] = theirs
    return views


def partitioned_from(node, view, peers=None):
    """The members Mnesia on ``node`` runs without although they run, sorted.

    After a network split, each side's Mnesia drops the other from
    ``running_db_nodes`` and never takes it back by itself, even once the network
    works and the nodes connect again (it reports ``{inconsistent_database,
    running_partitioned_network, Node}`` then, in the log only). So a member of
    ``db_nodes`` that is not running for ``node`` is partitioned from it when
    ``peers`` (``{name: mnesia_view}`` of the members reached) shows that its
    Mnesia runs and lists ``node`` in its schema, or, for a member not in ``peers``,
    when ``node`` is connected to it (Mnesia on both ends up, yet apart). A member
    that is only down is neither.
    """
    if node not in view['running_db_nodes']:
        return []  # Mnesia is not running here: it shares nothing with anyone
    apart = []
    for other in view['db_nodes']:
        if other == node or other in view['running_db_nodes']:
            continue
        theirs = (peers or {}).get(other)
        if theirs is not None:
            if other in theirs['running_db_nodes'] and node in theirs['db_nodes']:
                apart.append(other)
        elif other in view['connected_nodes']:
            apart.append(other)
    return sorted(apart)


def partitions(views):
    """The sides of a partitioned cluster: each distinct ``running_db_nodes`` of the
    nodes in ``views`` (``{name: mnesia_view}``) whose Mnesia runs, largest first."""
    sides = {tuple(view['running_db_nodes']) for name, view in views.items()
             if name in view.get('running_db_nodes', ())}
    return sorted((list(side) for side in sides), key=lambda side: (-len(side), side))


def ejabberd_started(conn, timeout=None):
    """Whether the ejabberd application is up (a join restarts it in the background)."""
    apps = conn.rpc('application', 'which_applications', [], timeout)
    return isinstance(apps, list) and any(
        isinstance(app, tuple) and app and app[0] == Atom('ejabberd') for app in apps)


def ejabberd_version(conn, timeout=None):
    """``(release, vsn)``: ejabberd's release ("24.12") and the application's own
    version string, which distribution packages extend ("24.12-3+deb13u2")."""
    answer = conn.rpc('application', 'get_key', [Atom('ejabberd'), Atom('vsn')], timeout)
    if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == Atom('ok'):
        vsn = short_text(answer[1], 200)
        return (vsn.split('-', maxsplit=1)[0] if vsn else vsn), vsn
    return None, None


def admin_result(term):
    """``(ok, message)`` from what an ejabberd_admin command returned.

    23.01 answers ``ok`` or ``{error, Reason}``; 24.06+ ``{ok, Text}`` or
    ``{error, Text}``.
    """
    if term == Atom('ok'):
        return True, ''
    if isinstance(term, tuple) and len(term) >= 2 and term[0] in (Atom('ok'), Atom('error')):
        text = short_text(term[1])
        detail = text if text is not None else format_term(term[1])
        return term[0] == Atom('ok'), detail
    return False, format_term(term)


def poll(check, wait_timeout, interval=0.25):
    """Call ``check()`` until it returns a true value or ``wait_timeout`` passes.

    Returns the last value.  DistErrors count as "not yet" (a node restarting
    its ejabberd application answers badrpc for a moment) but the last one is
    raised if time runs out while failing.
    """
    end = time.monotonic() + wait_timeout
    while True:
        error = None
        try:
            value = check()
        except erldist.DistError as exc:
            value, error = None, exc
        if value:
            return value
        if time.monotonic() >= end:
            if error is not None:
                raise error
            return value
        time.sleep(interval)


# Persistent tables that hold no user data: Mnesia's own schema and ejabberd's cache of
# other entities' capabilities (refilled from the network).
NOT_USER_DATA = ('schema', 'caps_features')
# More tables than any ejabberd has: a longer answer is not a table list.
MAX_TABLES = 1000


def local_tables(conn, timeout=None):
    """Record counts of the Mnesia tables this node keeps on disc, ``{table: count}``.

    RAM-only tables (sessions, routes) are left out: a restart empties them anyway.
    Raises DistError (``rpc_error`` when Mnesia does not run on the node, or the
    answer is not a list of tables).
    """
    tables = conn.rpc('mnesia', 'system_info', [Atom('local_tables')], timeout)
    if not isinstance(tables, list) or len(tables) > MAX_TABLES \
            or not all(isinstance(t, Atom) for t in tables):
        raise erldist.DistError('rpc_error', 'mnesia:system_info(local_tables) on %s returned '
                                '%s, not a list of tables' % (conn.node, format_term(tables, 200)))
    counts = {}
    for table in tables:
        storage = conn.rpc('mnesia', 'table_info', [table, Atom('storage_type')], timeout)
        if storage in (Atom('disc_copies'), Atom('disc_only_copies')):
            size = conn.rpc('mnesia', 'table_info', [table, Atom('size')], timeout)
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2 ** 63:
                raise erldist.DistError('rpc_error', 'mnesia:table_info(%s, size) on %s returned '
                                        '%s, not a count' % (table, conn.node, format_term(size, 80)))
            counts[str(table)] = size
    return counts


def user_data(counts):
    """The tables of :func:`local_tables` that hold user data, ``{table: count}``."""
    return {table: count for table, count in counts.items()
            if count and table not in NOT_USER_DATA}


def mnesia_state(conn, timeout=None):
    """``(running, has_schema, directory)`` of the node's Mnesia database."""
    running = conn.rpc('mnesia', 'system_info', [Atom('is_running')], timeout) == Atom('yes')
    has_schema = conn.rpc('mnesia', 'system_info', [Atom('use_dir')], timeout) is True
    directory = short_text(conn.rpc('mnesia', 'system_info', [Atom('directory')], timeout))
    return running, has_schema, directory


def delete_database(conn, timeout=None, backup=None):
    """Delete the node's Mnesia database as ejabberd does before a join (ejabberd and
    Mnesia stopped, ``mnesia:delete_schema/1``), after :func:`dump` to the path
    ``backup`` if given; then stop the node. DistError on failure (nothing deleted
    when the backup fails)."""
    slow = _seconds(conn, timeout, SLOW_FACTOR)
    if backup:
        dump(conn, backup, timeout)
    conn.rpc('application', 'stop', [Atom('ejabberd')], slow)
    conn.rpc('mnesia', 'stop', [], slow)
    answer = conn.rpc('mnesia', 'delete_schema', [[Atom(conn.node)]], slow)
    if answer != Atom('ok'):
        raise erldist.DistError('rpc_error', 'mnesia:delete_schema failed on %s: %s'
                                % (conn.node, format_term(answer, 200)))
    # Without its application, ejabberdctl (and so the service's stop command) can no
    # longer talk to the node: it stops itself, as ejabberd's leave_cluster stops it.
    conn.rpc('init', 'stop', [], timeout)


def dump(conn, path, timeout=None):
    """ejabberd's own backup of the node's Mnesia database to ``path`` on the node's host;
    returns the file's size in bytes.

    ``mnesia:backup/1`` is what ``ejabberdctl backup`` runs (ejabberd_admin:backup_mnesia);
    called here directly, it also works while the ejabberd application is stopped. It
    holds every table the node's cluster has, not only the node's own copies. Raises
    DistError ``backup_failed`` (Mnesia writes into a temporary file and renames it at
    the end, so a failed backup leaves an earlier file at ``path`` as it was).
    """
    answer = conn.rpc('mnesia', 'backup', [path], _seconds(conn, timeout, SLOW_FACTOR))
    if answer != Atom('ok'):
        raise erldist.DistError('backup_failed', 'the backup of %s to %s failed: %s (the '
                                'directory must exist on that host and be writable by the '
                                'service user)' % (conn.node, path, format_term(answer, 200)))
    return file_size(conn, path, timeout)


def file_size(conn, path, timeout=None):
    """Size in bytes of a regular file on the node's host, None when there is none."""
    if conn.rpc('filelib', 'is_regular', [path], timeout) is not True:
        return None
    size = conn.rpc('filelib', 'file_size', [path], timeout)
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def restore(conn, path, timeout=None):
    """Restore the backup at ``path`` (on the node's host) as ``ejabberdctl restore`` does;
    returns the sorted names of the tables restored.

    ``ejabberd_admin:restore/1`` is ``mnesia:restore/2`` with ejabberd's options:
    the tables ejabberd uses (accounts, and those of its loaded modules) get the
    backup's records added to what they hold (keep_tables), every other table of the
    backup is skipped. ``ejabberdctl restore`` runs it through restore_mnesia/1, which
    crashes on most errors; called here, every error is named. Mnesia restores in one
    transaction, on every node of the cluster that holds those tables. Raises DistError
    ``restore_failed``.
    """
    answer = conn.rpc('ejabberd_admin', 'restore', [path], _seconds(conn, timeout, SLOW_FACTOR))
    if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == Atom('atomic') \
            and isinstance(answer[1], list) and len(answer[1]) <= MAX_TABLES \
            and all(isinstance(t, Atom) for t in answer[1]):
        return sorted(str(t) for t in answer[1])
    raise erldist.DistError('restore_failed', 'the restore of %s from %s failed: %s'
                            % (conn.node, path, format_term(answer, 200)))


def wait_stopped(target, wait_timeout=60.0):
    """Poll until the node of ``target`` (erldist.connect arguments) no longer answers;
    False if it still does after ``wait_timeout`` seconds."""
    def gone():
        try:
            erldist.connect(**target).close()
        except erldist.DistError as exc:
            return exc.reason in ('unreachable', 'epmd_unreachable', 'not_registered')
        return False
    return poll(gone, wait_timeout) or False
