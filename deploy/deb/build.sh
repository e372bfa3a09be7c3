#!/usr/bin/env bash
# Builds the Debian package of outpost from an already built binary.
# Usage: deploy/deb/build.sh BINARY OUTDIR   (`make deb` builds the release binary first)
# OUTPOST_DEB_VERSION overrides the version (the upgrade test builds an older one).
#
# What the package does, beside its files: Depends on the C library versions the
# binary was linked against (dpkg-shlibdeps); /etc/outpost/outpost.yaml is a conffile
# (an operator's edits survive upgrades); configure creates the user and the spool;
# an upgrade restarts a running daemon (try-restart: a stopped one stays stopped);
# remove and purge stop it. Purge leaves /var/spool/outpost: it may hold undelivered
# files.
set -euo pipefail
BIN=$1; OUT=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=${OUTPOST_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)}
ARCH=$(dpkg --print-architecture)
PKG="$OUT/outpost_${VERSION}_${ARCH}"
rm -rf "$PKG"; mkdir -p "$PKG/DEBIAN"
# The libraries the binary needs, with the versions its symbols require.
SHLIBS=$(mktemp -d)
trap 'rm -rf "$SHLIBS"' EXIT
mkdir -p "$SHLIBS/debian"
printf 'Source: outpost\n\nPackage: outpost\nArchitecture: any\n' > "$SHLIBS/debian/control"
BIN_ABS=$(realpath "$BIN")
DEPENDS=$(cd "$SHLIBS" && dpkg-shlibdeps -O "$BIN_ABS" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$DEPENDS" ] || { echo "dpkg-shlibdeps found no dependencies of $BIN" >&2; exit 1; }
install -D -m 0755 "$BIN" "$PKG/usr/bin/outpost"
install -D -m 0644 "$ROOT/systemd/outpost.service" "$PKG/lib/systemd/system/outpost.service"
install -D -m 0644 "$ROOT/systemd/outpost.sysusers" "$PKG/usr/lib/sysusers.d/outpost.conf"
install -D -m 0644 "$ROOT/systemd/outpost.tmpfiles" "$PKG/usr/lib/tmpfiles.d/outpost.conf"
install -D -m 0640 "$ROOT/deploy/outpost.example.yaml" "$PKG/etc/outpost/outpost.yaml"
install -D -m 0644 "$ROOT/deploy/outpost.example.yaml" "$PKG/usr/share/doc/outpost/outpost.example.yaml"
for f in "$ROOT"/README.md "$ROOT"/CHANGELOG.md "$ROOT"/docs/*.md; do
  install -D -m 0644 "$f" "$PKG/usr/share/doc/outpost/$(basename "$f")"
done
install -D -m 0644 "$ROOT/deploy/prometheus/outpost.rules.yml" "$PKG/usr/share/doc/outpost/prometheus/outpost.rules.yml"
install -D -m 0644 "$ROOT/deploy/grafana/outpost.json" "$PKG/usr/share/doc/outpost/grafana/outpost.json"
echo "/etc/outpost/outpost.yaml" > "$PKG/DEBIAN/conffiles"
cat > "$PKG/DEBIAN/control" <<C
Package: outpost
Version: $VERSION
Architecture: $ARCH
Maintainer: outpost maintainers <outpost@localhost>
Section: net
Priority: optional
Depends: $DEPENDS
Description: outbound publisher from a spool directory to customers' S3 buckets
 Exporters drop finished batch files into a spool; outpost uploads each to its
 destination bucket with the ACL bucket-owner-full-control, retries with backoff,
 loses nothing on a crash, and exposes Prometheus metrics.
C
cat > "$PKG/DEBIAN/postinst" <<'S'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/outpost.conf
  elif ! getent passwd outpost >/dev/null; then
    adduser --system --group --home /var/spool/outpost --no-create-home outpost >/dev/null
  fi
  if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/outpost.conf
  else
    install -d -m 3775 -o outpost -g outpost /var/spool/outpost
  fi
  chgrp outpost /etc/outpost/outpost.yaml 2>/dev/null || true
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade ($2 is the version replaced): a running daemon restarts on the new
    # binary (claims and multipart uploads resume); a stopped one stays stopped.
    if [ -n "$2" ]; then
      systemctl try-restart outpost.service || true
    fi
  fi
fi
exit 0
S
cat > "$PKG/DEBIAN/prerm" <<'S'
#!/bin/sh
set -e
# remove (also the first step of purge): stop the daemon. An upgrade does not stop
# it here; the new package's postinst restarts it.
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop outpost.service || true
fi
exit 0
S
cat > "$PKG/DEBIAN/postrm" <<'S'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  if [ "$1" = purge ]; then
    systemctl stop outpost.service 2>/dev/null || true
  fi
  systemctl daemon-reload || true
fi
exit 0
S
chmod 0755 "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/prerm" "$PKG/DEBIAN/postrm"
dpkg-deb --root-owner-group --build "$PKG" "$PKG.deb" >/dev/null
echo "$PKG.deb"
