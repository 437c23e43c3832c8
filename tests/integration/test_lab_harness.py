# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab harness (tests/helpers/lab.py): its one subnet allocator, under contention."""

from __future__ import annotations

import concurrent.futures
import ipaddress

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.common import require_docker
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import (
    SUBNET_POOL_FIRST, LabCluster, docker, free_subnet, run_prefix, subnet_lock)

pytestmark = pytest.mark.lab


def test_labs_started_at_once_get_their_own_free_subnets():
    """Four labs (networks only) come up side by side: four different /24s of the pool,
    none overlapping another docker network; all gone after close()."""
    require_docker()
    labs = [LabCluster(size=0, prefix=run_prefix("xlh%d" % i)) for i in range(4)]
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda lab: lab.up(), labs))
        subnets = [lab.subnet for lab in labs]
        assert len(set(subnets)) == 4, subnets
        assert all(net.prefixlen == 24 and net.network_address.packed[2] >= SUBNET_POOL_FIRST
                   for net in subnets), subnets
        for lab in labs:
            seen = docker(["network", "inspect", "--format",
                           "{{range .IPAM.Config}}{{.Subnet}}{{end}}", lab.network]).stdout.strip()
            assert ipaddress.ip_network(seen) == lab.subnet
        with subnet_lock():
            assert free_subnet() not in subnets      # taken ones are skipped
    finally:
        for lab in labs:
            lab.close()
    for lab in labs:
        assert docker(["network", "inspect", lab.network], check=False).returncode != 0
