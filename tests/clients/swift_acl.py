#!/usr/bin/env python3
"""Swift tenancy and ACLs through python-swiftclient against a running Cairn gateway.

Usage: swift_acl.py ENDPOINTS_JSON OTHER_PROJECT OTHER_USER OTHER_PASSWORD
"""
import json
import sys
import urllib.error
import urllib.request

from swiftclient import client as sc
from swiftclient.exceptions import ClientException

ep = json.load(open(sys.argv[1]))
other_project, other_user, other_pass = sys.argv[2:5]
auth = ep["swift"]["auth_url"]


def status_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except ClientException as e:
        return e.http_status
    return 200


def anon(url):
    """An anonymous GET: (status, body)."""
    try:
        r = urllib.request.urlopen(url)
        return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


url_a, tok_a = sc.get_auth(auth, ep["swift"]["user"], ep["swift"]["key"])
url_b, tok_b = sc.get_auth(auth, "%s:%s" % (other_project, other_user), other_pass)
assert url_a != url_b, "two projects share an account"
print("ok: two projects, two accounts")

assert status_of(sc.get_auth, auth, ep["swift"]["user"], "wrong-password") == 401
assert status_of(sc.head_account, url_a, "AUTH_tk" + "0" * 64) == 401
assert status_of(sc.head_account, url_a, "not-a-token") == 401
print("ok: wrong password and bad tokens get 401")

sc.put_container(url_a, tok_a, "shared")
sc.put_object(url_a, tok_a, "shared", "doc", b"hello from a", content_type="text/plain")
# Another tenant: no access to the account or container, cannot write or delete.
assert status_of(sc.get_account, url_a, tok_b) == 403
assert status_of(sc.get_container, url_a, tok_b, "shared") == 403
assert status_of(sc.get_object, url_a, tok_b, "shared", "doc") == 403
assert status_of(sc.put_object, url_a, tok_b, "shared", "evil", b"x") == 403
assert status_of(sc.delete_object, url_a, tok_b, "shared", "doc") == 403
assert anon(url_a + "/shared/doc")[0] == 401
print("ok: another tenant and anonymous callers are refused")

# A read ACL for the other project lets it read and list, not write.
sc.post_container(url_a, tok_a, "shared", {"X-Container-Read": "%s:*" % other_project})
assert sc.head_container(url_a, tok_a, "shared")["x-container-read"] == "%s:*" % other_project
_, body = sc.get_object(url_a, tok_b, "shared", "doc")
assert body == b"hello from a"
_, listing = sc.get_container(url_a, tok_b, "shared")
assert [o["name"] for o in listing] == ["doc"]
assert status_of(sc.put_object, url_a, tok_b, "shared", "evil", b"x") == 403
print("ok: read ACL grants read and listing only")

# A write ACL lets it write.
sc.post_container(url_a, tok_a, "shared", {"X-Container-Write": "%s:%s" % (other_project, other_user)})
sc.put_object(url_a, tok_b, "shared", "from-b", b"written by b")
_, body = sc.get_object(url_a, tok_a, "shared", "from-b")
assert body == b"written by b"
print("ok: write ACL grants writes")

# Public read with .r:* (no listing without .rlistings).
sc.post_container(url_a, tok_a, "shared", {"X-Container-Read": ".r:*"})
assert anon(url_a + "/shared/doc") == (200, b"hello from a")
assert anon(url_a + "/shared")[0] == 401
print("ok: .r:* makes objects public, listings stay private")

# Malformed input: bad metadata, bad ACL, bad manifest.
assert status_of(sc.post_container, url_a, tok_a, "shared", {"X-Container-Meta-" + "k" * 200: "v"}) == 400
assert status_of(sc.post_container, url_a, tok_a, "shared", {"X-Container-Read": ".bogus:x"}) == 400
assert status_of(sc.put_object, url_a, tok_a, "shared", "slo", b"{not json",
                 query_string="multipart-manifest=put") == 400
assert status_of(sc.put_object, url_a, tok_a, "shared", "slo",
                 json.dumps([{"path": "/shared/missing", "etag": None, "size_bytes": None}]),
                 query_string="multipart-manifest=put") == 400
assert status_of(sc.get_object, url_a, tok_a, "shared", "slo") == 404
assert status_of(sc.get_object, url_a, tok_a, "shared", "doc", headers={"Range": "bytes=100-200"}) == 416
print("ok: malformed metadata, ACL and SLO manifests refused; bad range 416; nothing created")
# Uploads without a Content-Length (Transfer-Encoding: chunked, as swiftclient sends for a
# generator): one small enough to stay in the gateway's memory, one spooled to its disk.
import hashlib
import os

sc.put_container(url_a, tok_a, "chunked")
for name, size in (("small", 300_000), ("large", 3_000_001)):
    data = os.urandom(size)

    def pieces(d=data):
        for i in range(0, len(d), 65536):
            yield d[i:i + 65536]

    etag = sc.put_object(url_a, tok_a, "chunked", name, contents=pieces())
    assert etag == hashlib.md5(data).hexdigest(), (name, etag)
    hdrs, got = sc.get_object(url_a, tok_a, "chunked", name)
    assert got == data and int(hdrs["content-length"]) == size, name
    assert sc.head_object(url_a, tok_a, "chunked", name)["etag"].strip('"') == etag
print("ok: chunked uploads without Content-Length, in memory and spooled, read back whole")

# Account totals: the sum of the containers' object counts and bytes (kept for up to 2 s).
import time

time.sleep(2.1)
hdrs, containers = sc.get_account(url_a, tok_a)
row = next(c for c in containers if c["name"] == "chunked")
assert (row["count"], row["bytes"]) == (2, 300_000 + 3_000_001), row
assert int(hdrs["x-account-object-count"]) == sum(c["count"] for c in containers), hdrs
assert int(hdrs["x-account-bytes-used"]) == sum(c["bytes"] for c in containers), hdrs
assert int(hdrs["x-account-container-count"]) == len(containers), hdrs
sc.delete_object(url_a, tok_a, "chunked", "small")
time.sleep(2.1)
hdrs = sc.head_account(url_a, tok_a)
assert int(hdrs["x-account-bytes-used"]) == sum(c["bytes"] for c in containers) - 300_000, hdrs
print("ok: account object and byte totals, per-container counts in the account listing")
print("ALL SWIFT ACL CHECKS PASSED")
