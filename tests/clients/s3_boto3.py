#!/usr/bin/env python3
"""S3 semantics through boto3 against a running Cairn gateway.

Usage: s3_boto3.py ENDPOINTS_JSON OTHER_TENANT_KEY_JSON
Every check asserts; the first failure exits non-zero with a traceback. Prints one line per
check so a failure's context is in the test log.
"""
import hashlib
import io
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

ep = json.load(open(sys.argv[1]))
other = json.load(open(sys.argv[2]))
S3 = ep["s3"]
# `cairn up --https`: trust the cluster CA that signed the gateway's certificate.
CA = S3.get("ca_bundle")
TLS = ssl.create_default_context(cafile=CA) if CA else None


def urlopen(req):
    return urllib.request.urlopen(req, context=TLS)



def client(ak=None, sk=None, **cfg):
    return boto3.client(
        "s3",
        endpoint_url=S3["endpoint"],
        region_name=S3["region"],
        aws_access_key_id=ak or S3["access_key"],
        aws_secret_access_key=sk or S3["secret_key"],
        verify=CA if CA else None,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                      retries={"max_attempts": 1}, read_timeout=300, **cfg),
    )


s3 = client()
print("boto3", boto3.__version__, "botocore", botocore.__version__)


def check(name):
    print("ok:", name, flush=True)


def error_code(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected an error from %s" % fn.__name__)


bucket = "boto-" + uuid.uuid4().hex[:12]
s3.create_bucket(Bucket=bucket)
assert error_code(s3.create_bucket, Bucket=bucket) == ("BucketAlreadyOwnedByYou", 409)
assert error_code(s3.create_bucket, Bucket="Bad_Name")[0] == "InvalidBucketName"
s3.head_bucket(Bucket=bucket)
assert any(b["Name"] == bucket for b in s3.list_buckets()["Buckets"])
loc = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]
assert loc in (None, S3["region"]), loc
check("buckets: create, duplicate, bad name, head, list, location")

# Objects: metadata, content headers, ETag = MD5.
body = os.urandom(300_000)
r = s3.put_object(Bucket=bucket, Key="a/b.bin", Body=body, ContentType="application/x-test",
                  Metadata={"color": "blue"}, ContentDisposition="attachment", CacheControl="max-age=5")
assert r["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), r["ETag"]
h = s3.head_object(Bucket=bucket, Key="a/b.bin")
assert h["ContentLength"] == len(body) and h["ContentType"] == "application/x-test"
assert h["Metadata"] == {"color": "blue"}, h["Metadata"]
assert h["ContentDisposition"] == "attachment" and h["CacheControl"] == "max-age=5"
g = s3.get_object(Bucket=bucket, Key="a/b.bin")
assert g["Body"].read() == body
check("put/head/get with metadata and content headers")

# Ranges.
g = s3.get_object(Bucket=bucket, Key="a/b.bin", Range="bytes=100-199")
assert g["Body"].read() == body[100:200] and g["ContentRange"] == "bytes 100-199/%d" % len(body)
g = s3.get_object(Bucket=bucket, Key="a/b.bin", Range="bytes=-10")
assert g["Body"].read() == body[-10:]
assert error_code(s3.get_object, Bucket=bucket, Key="a/b.bin", Range="bytes=999999-")[0] == "InvalidRange"
check("ranges incl. suffix and unsatisfiable")

# Conditional requests.
etag = h["ETag"]
assert error_code(s3.get_object, Bucket=bucket, Key="a/b.bin", IfMatch='"00000000000000000000000000000000"') == ("PreconditionFailed", 412)
assert error_code(s3.get_object, Bucket=bucket, Key="a/b.bin", IfNoneMatch=etag)[1] == 304
s3.get_object(Bucket=bucket, Key="a/b.bin", IfMatch=etag)
assert error_code(s3.get_object, Bucket=bucket, Key="a/b.bin", IfModifiedSince=h["LastModified"])[1] == 304
if "IfNoneMatch" in s3.meta.service_model.operation_model("PutObject").input_shape.members:
    assert error_code(s3.put_object, Bucket=bucket, Key="a/b.bin", Body=b"x", IfNoneMatch="*") == ("PreconditionFailed", 412)
    s3.put_object(Bucket=bucket, Key="new-key", Body=b"x", IfNoneMatch="*")
    check("conditional GET and conditional PUT")
else:
    check("conditional GET (this botocore has no conditional PUT)")

# Checksums (boto3 >= 1.36 sends CRC32 trailers by default; ask for SHA256 and CRC32C too).
try:
    import awscrt  # noqa: F401  botocore computes CRC32C only with it
    algos = ("CRC32", "CRC32C", "SHA256")
except ImportError:
    algos = ("CRC32", "SHA256")
sent = []
s3.meta.events.register("before-send.s3.PutObject",
                        lambda request, **kw: sent.append({k.lower(): v for k, v in request.headers.items()}))
for algo in algos:
    r = s3.put_object(Bucket=bucket, Key="sum-" + algo, Body=body, ChecksumAlgorithm=algo)
    trailer = sent[-1].get("x-amz-trailer", b"")
    trailer = trailer.decode() if isinstance(trailer, bytes) else trailer
    if CA and tuple(int(x) for x in botocore.__version__.split(".")[:2]) >= (1, 36):
        # Over HTTPS a current botocore sends the checksum as an aws-chunked trailer.
        assert trailer == "x-amz-checksum-" + algo.lower(), (algo, sent[-1])
    assert "Checksum" + algo in r, r
    assert s3.get_object(Bucket=bucket, Key="sum-" + algo)["Body"].read() == body
    # Kept with the object: returned (and checked by botocore) when asked for.
    g = s3.get_object(Bucket=bucket, Key="sum-" + algo, ChecksumMode="ENABLED")
    assert g.get("Checksum" + algo) == r["Checksum" + algo], (algo, g.get("Checksum" + algo))
    assert g["Body"].read() == body
check("x-amz-checksum uploads: " + "/".join(algos) + "; returned by GET with ChecksumMode")

# botocore sends checksums as trailers only over HTTPS, so frame one by hand: an unsigned
# aws-chunked body whose CRC32 comes after the last chunk, header-signed with SigV4.
import base64
import zlib
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def trailer_put(key, data, crc_b64):
    framed = (b"%x\r\n" % len(data) + data + b"\r\n0\r\n"
              + b"x-amz-checksum-crc32:" + crc_b64.encode() + b"\r\n\r\n")
    url = f"{S3['endpoint']}/{bucket}/{key}"
    req = AWSRequest(method="PUT", url=url, data=framed, headers={
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "content-length": str(len(framed)),
    })
    SigV4Auth(Credentials(S3["access_key"], S3["secret_key"]), "s3", S3["region"]).add_auth(req)
    raw = urllib.request.Request(url, data=framed, headers=dict(req.headers.items()), method="PUT")
    try:
        with urlopen(raw) as resp:
            return resp.status, resp.headers.get("x-amz-checksum-crc32"), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, None, e.read()


tdata = os.urandom(300 * 1024)
tcrc = base64.b64encode(zlib.crc32(tdata).to_bytes(4, "big")).decode()
status, answered, _ = trailer_put("trailer-crc32", tdata, tcrc)
assert (status, answered) == (200, tcrc), (status, answered)
g = s3.get_object(Bucket=bucket, Key="trailer-crc32", ChecksumMode="ENABLED")
assert g.get("ChecksumCRC32") == tcrc and g["Body"].read() == tdata, g.get("ChecksumCRC32")
wrong = base64.b64encode(((zlib.crc32(tdata) + 1) & 0xffffffff).to_bytes(4, "big")).decode()
status, _, answer = trailer_put("trailer-bad", tdata, wrong)
assert status == 400 and b"BadDigest" in answer, (status, answer)
assert error_code(s3.head_object, Bucket=bucket, Key="trailer-bad")[1] == 404
check("aws-chunked upload with a CRC32 trailer: kept and returned; a wrong trailer is refused")

# Copy, metadata directive.
s3.copy_object(Bucket=bucket, Key="copy1", CopySource={"Bucket": bucket, "Key": "a/b.bin"})
h2 = s3.head_object(Bucket=bucket, Key="copy1")
assert h2["Metadata"] == {"color": "blue"} and h2["ETag"] == etag
s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "a/b.bin"},
               MetadataDirective="REPLACE", Metadata={"shape": "round"}, ContentType="text/plain")
h3 = s3.head_object(Bucket=bucket, Key="copy2")
assert h3["Metadata"] == {"shape": "round"} and h3["ContentType"] == "text/plain"
assert error_code(s3.copy_object, Bucket=bucket, Key="a/b.bin", CopySource={"Bucket": bucket, "Key": "a/b.bin"})[0] == "InvalidRequest"
check("copy with COPY and REPLACE directives; copy onto itself refused")

# Multipart: create, upload parts (one by copy), list, complete, abort, list uploads.
key = "mpu/object"
up = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="video/test", Metadata={"m": "1"})
uid = up["UploadId"]
p1 = os.urandom(5 * 1024 * 1024)
p2 = os.urandom(1024 * 1024)
e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=p1)["ETag"]
e2 = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=uid, PartNumber=2,
                         CopySource={"Bucket": bucket, "Key": "a/b.bin"},
                         CopySourceRange="bytes=0-99999")["CopyPartResult"]["ETag"]
e3 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=3, Body=p2)["ETag"]
parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
assert [p["PartNumber"] for p in parts] == [1, 2, 3], parts
ups = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
assert any(u["UploadId"] == uid for u in ups), ups
# Part 2 is 100,000 bytes: too small for a middle part.
assert error_code(s3.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=uid,
                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}, {"PartNumber": 3, "ETag": e3}]})[0] == "EntityTooSmall"
assert error_code(s3.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=uid,
                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]})[0] == "InvalidPart"
done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e3}]})
md5s = hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p2).digest()).hexdigest()
assert done["ETag"] == '"%s-2"' % md5s, (done["ETag"], md5s)
g = s3.get_object(Bucket=bucket, Key=key)
assert g["ContentType"] == "video/test" and g["Metadata"] == {"m": "1"}
assert g["Body"].read() == p1 + p2
g = s3.get_object(Bucket=bucket, Key=key, Range="bytes=%d-%d" % (len(p1) - 5, len(p1) + 4))
assert g["Body"].read() == (p1 + p2)[len(p1) - 5:len(p1) + 5]
assert error_code(s3.upload_part, Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=b"x")[0] == "NoSuchUpload"
up2 = s3.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
s3.upload_part(Bucket=bucket, Key="aborted", UploadId=up2, PartNumber=1, Body=b"abc")
s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=up2)
assert not any(u["UploadId"] == up2 for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
check("multipart: parts, copy part, list parts/uploads, validation, complete, ranged read, abort")


def swift_session():
    sw = ep["swift"]
    r = urlopen(urllib.request.Request(
        sw["auth_url"], headers={"X-Auth-User": sw["user"], "X-Auth-Key": sw["key"]}))
    return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]


def part_names(prefix):
    """The part objects under `prefix` in the bucket's segments container (Swift's view)."""
    url, token = swift_session()
    q = urllib.parse.quote(bucket + "+segments", safe="") + "?format=json&prefix=" + urllib.parse.quote(prefix)
    r = urlopen(urllib.request.Request(url + "/" + q, headers={"X-Auth-Token": token}))
    return sorted(o["name"] for o in json.loads(r.read() or b"[]"))


def parts_settle(prefix, want):
    """Waits (bounded) until the listing shows exactly `want` (deletions reach the last
    listing replica a moment after the write's quorum answered)."""
    for _ in range(50):
        got = part_names(prefix)
        if got == want:
            return
        time.sleep(0.1)
    raise AssertionError("parts under %s: %s, expected %s" % (prefix, got, want))


# Replacing a multipart object drops its parts: by another multipart upload, then by a PUT.
parts_settle(key + "/" + uid + "/", [key + "/" + uid + "/00001", key + "/" + uid + "/00003"])
up3 = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
e = s3.upload_part(Bucket=bucket, Key=key, UploadId=up3, PartNumber=1, Body=b"new parts")["ETag"]
s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up3,
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"new parts"
parts_settle(key + "/" + uid + "/", [])
assert len(part_names(key + "/" + up3 + "/")) == 1
s3.put_object(Bucket=bucket, Key=key, Body=b"plain now")
parts_settle(key + "/", [])
assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"plain now"
check("replacing a multipart object (by multipart or PUT) deletes its old parts")

# Listings: 2,500 keys paginated (v2 and v1), delimiter, start-after, url encoding.
lb = "list-" + uuid.uuid4().hex[:12]
s3.create_bucket(Bucket=lb)
LIST_KEYS = int(os.environ.get("LIST_KEYS", "2500"))
names = ["k/%04d" % i for i in range(LIST_KEYS)] + ["top-%d" % i for i in range(5)] + ["sp ace+plus"]
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda n: s3.put_object(Bucket=lb, Key=n, Body=b"."), names))
got = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=lb, PaginationConfig={"PageSize": 1000}):
    got += [o["Key"] for o in page.get("Contents", [])]
assert got == sorted(names), (len(got), got[:3])
got1 = []
for page in s3.get_paginator("list_objects").paginate(Bucket=lb):
    got1 += [o["Key"] for o in page.get("Contents", [])]
assert got1 == sorted(names)
d = s3.list_objects_v2(Bucket=lb, Delimiter="/")
assert [p["Prefix"] for p in d["CommonPrefixes"]] == ["k/"] and len(d["Contents"]) == 6, d
sa = s3.list_objects_v2(Bucket=lb, StartAfter="k/%04d" % (LIST_KEYS - 3), Prefix="k/")
assert [o["Key"] for o in sa["Contents"]] == ["k/%04d" % (LIST_KEYS - 2), "k/%04d" % (LIST_KEYS - 1)]
mk = s3.list_objects_v2(Bucket=lb, MaxKeys=7, Prefix="k/")
assert mk["KeyCount"] == 7 and mk["IsTruncated"]
v = s3.list_object_versions(Bucket=lb, Prefix="top-")
assert [x["Key"] for x in v["Versions"]] == ["top-%d" % i for i in range(5)] and v["Versions"][0]["VersionId"] == "null"
check("listings: %d keys paginated v1/v2, delimiter, start-after, max-keys, versions" % len(names))

# DeleteObjects batch, then the bucket is deletable.
keys = [{"Key": n} for n in names]
for i in range(0, len(keys), 1000):
    r = s3.delete_objects(Bucket=lb, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
    assert not r.get("Errors"), r
assert s3.list_objects_v2(Bucket=lb)["KeyCount"] == 0
s3.delete_bucket(Bucket=lb)
assert error_code(s3.head_bucket, Bucket=lb)[1] == 404
assert error_code(s3.delete_bucket, Bucket=bucket)[0] == "BucketNotEmpty"
check("DeleteObjects batch; delete bucket; non-empty bucket refused")

# Presigned URLs: GET, PUT, expiry.
url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a/b.bin"}, ExpiresIn=60)
assert urlopen(url).read() == body
put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "presigned-put"}, ExpiresIn=60)
req = urllib.request.Request(put_url, data=b"via presigned", method="PUT")
urlopen(req).read()
assert s3.get_object(Bucket=bucket, Key="presigned-put")["Body"].read() == b"via presigned"
short = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a/b.bin"}, ExpiresIn=1)
time.sleep(2.5)
try:
    urlopen(short)
    raise AssertionError("expired presigned URL worked")
except urllib.error.HTTPError as e:
    assert e.code == 403 and b"<Code>AccessDenied</Code>" in e.read()
tampered = url.replace("a/b.bin", "a/c.bin")
try:
    urlopen(tampered)
    raise AssertionError("tampered presigned URL worked")
except urllib.error.HTTPError as e:
    assert e.code == 403 and b"SignatureDoesNotMatch" in e.read()
check("presigned GET/PUT; expired and tampered URLs refused")

# Negative: bad secret, unknown key, wrong tenant, malformed XML, oversized headers.
bad = client(sk="x" * 40)
assert error_code(bad.list_buckets) == ("SignatureDoesNotMatch", 403)
assert error_code(client(ak="AKIAUNKNOWNUNKNOWN00").list_buckets)[0] == "InvalidAccessKeyId"
t2 = client(ak=other["access_key"], sk=other["secret_key"])
assert bucket not in [b["Name"] for b in t2.list_buckets()["Buckets"]]
assert error_code(t2.get_object, Bucket=bucket, Key="a/b.bin")[0] == "NoSuchBucket"
assert error_code(t2.put_object, Bucket=bucket, Key="evil", Body=b"x")[0] == "NoSuchBucket"
assert error_code(t2.delete_object, Bucket=bucket, Key="a/b.bin")[0] == "NoSuchBucket"
assert s3.get_object(Bucket=bucket, Key="a/b.bin")["Body"].read() == body
check("bad signature, unknown key, other tenant sees nothing and changes nothing")

# Malformed XML: raw signed request with a broken body.
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
creds = boto3.Session(aws_access_key_id=S3["access_key"], aws_secret_access_key=S3["secret_key"]).get_credentials()


def raw(method, path, data=b"", headers=None):
    req = AWSRequest(method=method, url=S3["endpoint"] + path, data=data, headers=headers or {})
    req.headers["x-amz-content-sha256"] = hashlib.sha256(data).hexdigest()
    SigV4Auth(creds, "s3", S3["region"]).add_auth(req)
    r = urllib.request.Request(req.url, data=data if method in ("PUT", "POST") else None, method=method, headers=dict(req.headers))
    try:
        resp = urlopen(r)
        return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


status, text = raw("POST", "/%s?delete" % bucket, b"<Delete><Object><Key>a/b.bin</Key></Object")
assert status == 400 and b"<Code>MalformedXML</Code>" in text, (status, text)
status, text = raw("POST", "/%s/mpu/x?uploadId=%s" % (bucket, "f" * 32), b"<CompleteMultipartUpload><Part>")
assert status == 404 and b"NoSuchUpload" in text, (status, text)
status, text = raw("GET", "/%s/a/b.bin" % bucket, headers={"x-amz-meta-pad": "p" * 20000})
assert status == 400 and b"RequestHeaderSectionTooLarge" in text, (status, text)
assert s3.head_object(Bucket=bucket, Key="a/b.bin")["ContentLength"] == len(body)
check("malformed XML and oversized headers refused with S3 errors; nothing changed")

# Bodies that do not check out are never stored: a wrong Content-MD5, a wrong
# x-amz-content-sha256, and a body cut short by a client that goes away.
import base64
import socket
from urllib.parse import urlparse

status, text = raw("PUT", "/%s/bad-md5" % bucket, b"some bytes",
                   headers={"Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()})
assert status == 400 and b"<Code>BadDigest</Code>" in text, (status, text)
assert error_code(s3.head_object, Bucket=bucket, Key="bad-md5")[1] == 404


def signed_headers(method, path, headers, payload_hash):
    req = AWSRequest(method=method, url=S3["endpoint"] + path, headers=headers)
    req.headers["x-amz-content-sha256"] = payload_hash
    SigV4Auth(creds, "s3", S3["region"]).add_auth(req)
    return dict(req.headers)


def send_raw(method, path, headers, body, close_after=False):
    u = urlparse(S3["endpoint"])
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    if TLS:
        sock = TLS.wrap_socket(sock, server_hostname=u.hostname)
    head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, u.netloc)
    for k, v in headers.items():
        if k.lower() != "host":
            head += "%s: %s\r\n" % (k, v)
    sock.sendall(head.encode() + b"\r\n" + body)
    if close_after and TLS:
        # A TLS socket cannot half-close and still read: the cut is all that is tested here.
        sock.close()
        return b""
    if close_after:
        sock.shutdown(socket.SHUT_WR)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and close_after is False:
                break
    except socket.timeout:
        pass
    sock.close()
    return data


# Two checksum headers: S3 verifies one, so it refuses the pair (and stores nothing).
crc_hdr = base64.b64encode(zlib.crc32(b"two sums").to_bytes(4, "big")).decode()
sha_hdr = base64.b64encode(hashlib.sha256(b"two sums").digest()).decode()
h = signed_headers("PUT", "/%s/two-sums" % bucket,
                   {"Content-Length": "8", "x-amz-checksum-crc32": crc_hdr,
                    "x-amz-checksum-sha256": sha_hdr}, "UNSIGNED-PAYLOAD")
reply = send_raw("PUT", "/%s/two-sums" % bucket, h, b"two sums")
assert b" 400 " in reply.split(b"\r\n", 1)[0] and b"InvalidRequest" in reply, reply[:300]
assert error_code(s3.head_object, Bucket=bucket, Key="two-sums")[1] == 404

wrong = hashlib.sha256(b"not the body").hexdigest()
h = signed_headers("PUT", "/%s/bad-sha" % bucket, {"Content-Length": "10"}, wrong)
reply = send_raw("PUT", "/%s/bad-sha" % bucket, h, b"0123456789")
assert b"XAmzContentSHA256Mismatch" in reply, reply[:300]
assert error_code(s3.head_object, Bucket=bucket, Key="bad-sha")[1] == 404
h = signed_headers("PUT", "/%s/cut-short" % bucket, {"Content-Length": "100000"}, "UNSIGNED-PAYLOAD")
send_raw("PUT", "/%s/cut-short" % bucket, h, b"x" * 1000, close_after=True)
time.sleep(1)
assert error_code(s3.head_object, Bucket=bucket, Key="cut-short")[1] == 404
check("wrong Content-MD5, wrong payload hash and a truncated body store nothing")

# Clean up.
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for o in page.get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
s3.delete_bucket(Bucket=bucket)
check("cleanup")
print("ALL BOTO3 CHECKS PASSED")
