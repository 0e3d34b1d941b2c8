#!/usr/bin/env python3
"""Storage policies through boto3 against a running `cairn up` (which defines `replicated`,
the default, and `ec42`, erasure-coded 4+2).

Usage: ec_policy_boto3.py ENDPOINTS_JSON
Every check asserts; the first failure exits non-zero with a traceback.
"""
import hashlib
import json
import os
import sys
import urllib.parse
import urllib.request
import uuid

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

ep = json.load(open(sys.argv[1]))
S3 = ep["s3"]
MIB = 1024 * 1024
POLICY_HEADER = "x-cairn-storage-policy"


def client():
    return boto3.client(
        "s3",
        endpoint_url=S3["endpoint"],
        region_name=S3["region"],
        aws_access_key_id=S3["access_key"],
        aws_secret_access_key=S3["secret_key"],
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                      retries={"max_attempts": 1}, read_timeout=300),
    )


s3 = client()
print("boto3", boto3.__version__, "botocore", botocore.__version__)


def check(name):
    print("ok:", name, flush=True)


def error_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected an error from %s" % fn.__name__)


def create_with_header(name, policy, **kw):
    """CreateBucket with the x-cairn-storage-policy header (boto3 has no parameter for it)."""
    c = client()

    def add(request, **_):
        request.headers[POLICY_HEADER] = policy

    c.meta.events.register("before-sign.s3.CreateBucket", add)
    return c.create_bucket(Bucket=name, **kw)


def policy_of(bucket):
    h = s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
    return h.get(POLICY_HEADER)


assert [p["name"] for p in ep["storage_policies"]] == ["replicated", "ec42"], ep
check("endpoints.json lists the policies")

# Choosing: header, LocationConstraint, the region, nothing.
by_header = "ec-hdr-" + uuid.uuid4().hex[:10]
create_with_header(by_header, "EC42")
assert policy_of(by_header) == "ec42", policy_of(by_header)
check("x-cairn-storage-policy chooses ec42 (any case)")

by_location = "ec-loc-" + uuid.uuid4().hex[:10]
s3.create_bucket(Bucket=by_location, CreateBucketConfiguration={"LocationConstraint": "ec42"})
assert policy_of(by_location) == "ec42"
loc = s3.get_bucket_location(Bucket=by_location)["LocationConstraint"]
assert loc == (None if S3["region"] == "us-east-1" else S3["region"]), loc
check("LocationConstraint ec42 chooses ec42; GetBucketLocation still answers the region")

plain = "plain-" + uuid.uuid4().hex[:10]
s3.create_bucket(Bucket=plain)
assert policy_of(plain) == "replicated", policy_of(plain)
regional = "regional-" + uuid.uuid4().hex[:10]
s3.create_bucket(Bucket=regional, CreateBucketConfiguration={"LocationConstraint": S3["region"]})
assert policy_of(regional) == "replicated"
both = "both-" + uuid.uuid4().hex[:10]
create_with_header(both, "ec42", CreateBucketConfiguration={"LocationConstraint": S3["region"]})
assert policy_of(both) == "ec42"
check("no choice or the region means the default policy")

assert error_of(create_with_header, "bad-" + uuid.uuid4().hex[:10], "gold") == (
    "InvalidArgument", 400)
assert error_of(s3.create_bucket, Bucket="bad-" + uuid.uuid4().hex[:10],
                CreateBucketConfiguration={"LocationConstraint": "mars-1"}) == (
    "InvalidLocationConstraint", 400)
assert error_of(create_with_header, "bad-" + uuid.uuid4().hex[:10], "replicated",
                CreateBucketConfiguration={"LocationConstraint": "ec42"}) == (
    "InvalidArgument", 400)
check("unknown or disagreeing choices are refused")

assert error_of(create_with_header, by_header, "replicated") == ("BucketAlreadyOwnedByYou", 409)
assert error_of(s3.create_bucket, Bucket=by_header)[0] == "BucketAlreadyOwnedByYou"
assert policy_of(by_header) == "ec42"
assert error_of(create_with_header, plain, "ec42")[0] == "BucketAlreadyOwnedByYou"
assert policy_of(plain) == "replicated"
check("re-creating an owned bucket keeps its policy")

# Objects in the EC bucket: several sizes around the 1 MiB segment, then a multipart upload.
bucket = by_header
for size in [0, 1, MIB - 1, MIB, MIB + 1, 9 * MIB + 12345]:
    data = os.urandom(size)
    key = "obj-%d" % size
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert got == data, "size %d: got %d bytes back" % (size, len(got))
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    if size > 2:
        a, b = size // 3, size // 3 + min(size // 2, MIB + 7)
        part = s3.get_object(Bucket=bucket, Key=key, Range="bytes=%d-%d" % (a, b))
        assert part["Body"].read() == data[a:b + 1], "range of size %d" % size
    check("put/get/head/range of %d bytes" % size)

parts_data = [os.urandom(5 * MIB) for _ in range(3)] + [os.urandom(1)]
up = s3.create_multipart_upload(Bucket=bucket, Key="mpu/object")
done = []
for n, data in enumerate(parts_data, start=1):
    r = s3.upload_part(Bucket=bucket, Key="mpu/object", UploadId=up["UploadId"],
                       PartNumber=n, Body=data)
    done.append({"PartNumber": n, "ETag": r["ETag"]})
s3.complete_multipart_upload(Bucket=bucket, Key="mpu/object", UploadId=up["UploadId"],
                             MultipartUpload={"Parts": done})
whole = b"".join(parts_data)
got = s3.get_object(Bucket=bucket, Key="mpu/object")["Body"].read()
assert got == whole, "multipart object differs (%d vs %d bytes)" % (len(got), len(whole))
head = s3.head_object(Bucket=bucket, Key="mpu/object")
assert head["ContentLength"] == len(whole) and head["ETag"].endswith('-4"'), head
r = s3.get_object(Bucket=bucket, Key="mpu/object", Range="bytes=%d-%d" % (5 * MIB - 10, 10 * MIB + 10))
assert r["Body"].read() == whole[5 * MIB - 10:10 * MIB + 11]
check("multipart upload (3 x 5 MiB + 1) reads back whole and ranged")

# The parts' container has the bucket's policy (seen through Swift).
req = urllib.request.Request(ep["swift"]["auth_url"], headers={
    "X-Auth-User": ep["swift"]["user"], "X-Auth-Key": ep["swift"]["key"]})
with urllib.request.urlopen(req) as r:
    token, url = r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]
for name, want in [(bucket + "+segments", "ec42"), (bucket, "ec42"), (plain, "replicated")]:
    req = urllib.request.Request("%s/%s" % (url, urllib.parse.quote(name)), method="HEAD",
                                 headers={"X-Auth-Token": token})
    with urllib.request.urlopen(req) as r:
        assert r.headers["X-Storage-Policy"] == want, (name, r.headers["X-Storage-Policy"])
check("the multipart segments container has the bucket's policy")

keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
assert "mpu/object" in keys and "obj-0" in keys, keys
for k in keys:
    s3.delete_object(Bucket=bucket, Key=k)
assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
s3.delete_bucket(Bucket=bucket)
check("delete objects and the bucket")
print("ALL EC POLICY BOTO3 CHECKS PASSED")
