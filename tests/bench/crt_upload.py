"""A peer for `make bench`: boto3's transfer layer on the AWS CRT (the client boto3 uses
with `preferred_transfer_client="crt"`), uploading a file or every file of a folder
with the ACL bucket-owner-full-control. boto3 builds its CRT client for AWS endpoints
(TLS) only, so the same pieces (s3transfer.crt) are assembled here for a local endpoint,
the way boto3.crt does it.
Run with the venv that has `boto3[crt]`:
  crt_upload.py ENDPOINT BUCKET KEY PATH CONCURRENCY
KEY is the object's key for a file, the prefix of the keys for a folder. CONCURRENCY is a
number (TransferConfig max_concurrency, 8 MiB parts: the bench's equal concurrency) or
`default` (boto3's CRT defaults: 8 MiB parts, connections sized by the CRT to its
throughput target). Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the CA
from AWS_CA_BUNDLE."""
import os
import sys
from pathlib import Path

import botocore.session
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
import s3transfer.crt
from s3transfer.crt import (BotocoreCRTCredentialsWrapper, BotocoreCRTRequestSerializer, CRTTransferManager,
                            create_s3_crt_client)

MIB = 1 << 20


def no_trailing_checksum():
    creator = s3transfer.crt.S3ClientArgsCreator
    orig = creator._get_make_request_args_put_object

    def put_object(self, *args, **kwargs):
        made = orig(self, *args, **kwargs)
        made["checksum_config"] = None
        return made
    creator._get_make_request_args_put_object = put_object


def main():
    endpoint, bucket, key, path, conc = sys.argv[1:6]
    if os.environ.get("CRT_NO_CHECKSUM") == "1":
        no_trailing_checksum()
    session = botocore.session.Session()
    ca = os.environ.get("AWS_CA_BUNDLE")
    # Path-style addressing: the stores on 127.0.0.1 have no per-bucket host names.
    serializer = BotocoreCRTRequestSerializer(session, {
        "region_name": "us-east-1", "endpoint_url": endpoint,
        "config": Config(s3={"addressing_style": "path"}), "verify": ca or True})
    creds = BotocoreCRTCredentialsWrapper(session.get_credentials()).to_crt_credentials_provider()
    # As boto3.crt._create_crt_client: default part size (8 MiB) and throughput target.
    crt = create_s3_crt_client("us-east-1", crt_credentials_provider=creds, use_ssl=endpoint.startswith("https"),
                               verify=ca)
    if conc == "default":
        config = TransferConfig(preferred_transfer_client="crt")
    else:
        config = TransferConfig(preferred_transfer_client="crt", max_concurrency=int(conc),
                                multipart_chunksize=8 * MIB)
    src = Path(path)
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    with CRTTransferManager(crt, serializer, config=config) as tm:
        futures = [tm.upload(str(f), bucket, key + f.relative_to(src).as_posix() if src.is_dir() else key,
                             extra_args={"ACL": "bucket-owner-full-control"}) for f in files]
        for fut in futures:
            fut.result()


if __name__ == "__main__":
    main()
