"""A peer for `make bench`: boto3's transfer layer on the AWS CRT (the client boto3 uses
with `preferred_transfer_client="crt"`), uploading a file or every file of a folder
with the ACL bucket-owner-full-control. boto3 builds its CRT client for AWS endpoints
only, so the same pieces (s3transfer.crt) are assembled here for a local endpoint.
Run with the venv that has `boto3[crt]`:
  crt_upload.py ENDPOINT BUCKET PREFIX PATH CONCURRENCY
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
import os
import sys
from pathlib import Path

import botocore.session
from botocore.config import Config
from s3transfer.crt import (BotocoreCRTCredentialsWrapper, BotocoreCRTRequestSerializer, CRTTransferManager,
                            create_s3_crt_client)


def main():
    endpoint, bucket, prefix, path, conc = sys.argv[1:6]
    session = botocore.session.Session()
    # Path-style addressing: the stores on 127.0.0.1 have no per-bucket host names.
    serializer = BotocoreCRTRequestSerializer(session, {
        "region_name": "us-east-1", "endpoint_url": endpoint,
        "config": Config(s3={"addressing_style": "path"}),
        "verify": os.environ.get("AWS_CA_BUNDLE", True)})
    creds = BotocoreCRTCredentialsWrapper(session.get_credentials()).to_crt_credentials_provider()
    crt = create_s3_crt_client("us-east-1", crt_credentials_provider=creds,
                               use_ssl=endpoint.startswith("https"), part_size=8 * 1024 * 1024,
                               verify=os.environ.get("AWS_CA_BUNDLE"))
    src = Path(path)
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    with CRTTransferManager(crt, serializer) as tm:
        futures = [tm.upload(str(f), bucket, prefix + (f.relative_to(src).as_posix() if src.is_dir() else f.name),
                             extra_args={"ACL": "bucket-owner-full-control"}) for f in files]
        for fut in futures:
            fut.result()
    del conc  # the CRT sizes its own connection pool to its throughput target


if __name__ == "__main__":
    main()
