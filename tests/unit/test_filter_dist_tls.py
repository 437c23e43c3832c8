# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter dist_tls_problems on real certificates (tests/helpers/pki.py): each problem is
blamed on the file it concerns, under the label the caller gives (role ejabberd passes the
operator's variable names)."""

from __future__ import annotations

import pytest

from ansible_collections.xmpp.ejabberd.plugins.filter.dist_tls import dist_tls_problems
from ansible_collections.xmpp.ejabberd.tests.helpers import pki

LABELS = {"cert": "my_cert", "key": "my_key", "ca": "my_ca"}


def read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("pki"))
    own, stranger = pki.CA(work, "own"), pki.CA(work, "stranger")
    good, other = own.issue("n1", ["xmpp1.example.org"]), own.issue("n2", ["xmpp2.example.org"])
    foreign = stranger.issue("foreign", ["xmpp1.example.org"])
    expired = own.issue("old", ["xmpp1.example.org"], days=-1, valid_from_days=-10)
    return {"ca": read(own.path), "cert": read(good[0]), "key": read(good[1]),
            "other_key": read(other[1]), "foreign": [read(p) for p in foreign],
            "expired": [read(p) for p in expired]}


def test_good_files_have_no_problem(files):
    assert dist_tls_problems(files["cert"], key=files["key"], ca=files["ca"],
                             names=["xmpp1.example.org"], labels=LABELS) == []


@pytest.mark.parametrize("case,expected", [
    ("key_of_another", "my_key: the key does not belong to the certificate"),
    ("other_ca", "my_ca: the CA did not sign the certificate"),
    ("other_name", "my_cert: the certificate does not name xmpp9.example.org"),
    ("expired", "my_cert: the certificate has expired"),
    ("not_pem", "my_ca: the CA certificate is not PEM text"),
])
def test_each_problem_names_its_file(files, case, expected):
    cert, key, ca, names = files["cert"], files["key"], files["ca"], ["xmpp1.example.org"]
    if case == "key_of_another":
        key = files["other_key"]
    elif case == "other_ca":
        cert, key = files["foreign"]
    elif case == "other_name":
        names = ["xmpp9.example.org"]
    elif case == "expired":
        cert, key = files["expired"]
    else:
        ca = "not a certificate"
    problems = dist_tls_problems(cert, key=key, ca=ca, names=names, labels=LABELS)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_without_labels_the_sentences_stand_alone(files):
    problems = dist_tls_problems(files["cert"], key=files["other_key"], ca=files["ca"],
                                 names=["xmpp1.example.org"])
    assert problems == ["the key does not belong to the certificate"]
