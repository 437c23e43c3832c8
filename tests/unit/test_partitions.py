# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The partition rules of module_utils/ejabberd.py on the views seen in the lab
(tests/integration/test_ejabberd_cluster.py cuts the network for real).

Three members n1, n2, n3; the network between n3 and the others was cut and
restored: each side's Mnesia runs without the other, although all three stay in
``db_nodes``. On 23.01 the sides stay disconnected after the network works again;
on 26.07 they were connected again (``erlang:nodes()``) but still apart.
"""

from __future__ import annotations

from ansible_collections.xmpp.ejabberd.plugins.module_utils import ejabberd

N1, N2, N3 = "ejabberd@n1.lab", "ejabberd@n2.lab", "ejabberd@n3.lab"
ALL = (N1, N2, N3)


def view(running, connected, db=ALL):
    return {"db_nodes": list(db), "running_db_nodes": list(running), "connected_nodes": list(connected)}


def test_whole_cluster_is_not_partitioned():
    views = {n: view(ALL, [m for m in ALL if m != n]) for n in ALL}
    for n in ALL:
        assert ejabberd.partitioned_from(n, views[n]) == []
        assert ejabberd.partitioned_from(n, views[n], views) == []
    assert ejabberd.partitions(views) == [list(ALL)]


def test_split_seen_by_every_member_while_disconnected():
    views = {N1: view([N1, N2], [N2]), N2: view([N1, N2], [N1]), N3: view([N3], [])}
    # alone, a disconnected member cannot be told from a stopped one
    assert ejabberd.partitioned_from(N1, views[N1]) == []
    # with every member's word: each side runs without the other
    assert ejabberd.partitioned_from(N1, views[N1], views) == [N3]
    assert ejabberd.partitioned_from(N3, views[N3], views) == [N1, N2]
    assert ejabberd.partitions(views) == [[N1, N2], [N3]]


def test_split_seen_alone_once_reconnected():
    views = {N1: view([N1, N2], [N2, N3]), N3: view([N3], [N1, N2])}
    assert ejabberd.partitioned_from(N1, views[N1]) == [N3]
    assert ejabberd.partitioned_from(N3, views[N3]) == [N1, N2]


def test_stopped_member_is_not_a_partition():
    # n3 down: unreachable, so no view of its own, and not connected
    views = {N1: view([N1, N2], [N2]), N2: view([N1, N2], [N1])}
    assert ejabberd.partitioned_from(N1, views[N1], views) == []
    # n3's VM up but its Mnesia stopped (restarting): it runs with nobody
    views[N3] = view([], [N1, N2])
    assert ejabberd.partitioned_from(N1, views[N1], views) == []
    assert ejabberd.partitioned_from(N3, views[N3], views) == []
    assert ejabberd.partitions(views) == [[N1, N2]]


def test_a_node_that_left_is_not_a_partition():
    # n3 was removed while stopped: it still lists n1 and n2, they no longer list it
    views = {N1: view([N1, N2], [N2], db=[N1, N2]), N3: view([N3], [])}
    assert ejabberd.partitioned_from(N1, views[N1], views) == []
    assert ejabberd.partitioned_from(N3, views[N3], views) == []


def test_separate_clusters_are_not_a_partition():
    n5 = "ejabberd@n5.lab"
    views = {N1: view([N1, N2], [N2], db=[N1, N2]), N3: view([N3, n5], [n5], db=[N3, n5])}
    assert ejabberd.partitioned_from(N1, views[N1], views) == []
    assert ejabberd.partitioned_from(N3, views[N3], views) == []


def test_user_data_leaves_out_schema_and_caps_and_empty_tables():
    counts = {"schema": 39, "caps_features": 4, "passwd": 1, "roster": 0, "last_activity": 1}
    assert ejabberd.user_data(counts) == {"passwd": 1, "last_activity": 1}
