"""The client alone in a fresh Python process: connect, handshake, rpc erlang:nodes/0.

Usage: client_probe.py NODE COOKIE_FILE DIST_PORT|- EPMD_PORT
Shows what a Python process costs without Ansible's module_utils (imported by
every module), next to the whole module run.
"""
import sys

from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection, erldist


def main(node, cookie_file, dist_port, epmd_port):
    cookie = connection.read_cookie_file(cookie_file)
    port = None if dist_port == '-' else int(dist_port)
    with erldist.connect(node, cookie, dist_port=port, epmd_port=int(epmd_port)) as conn:
        print(conn.rpc('erlang', 'nodes', []))


if __name__ == '__main__':
    main(*sys.argv[1:5])
