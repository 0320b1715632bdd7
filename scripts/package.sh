#!/usr/bin/env bash
# Builds vswitch's Debian package from this checkout and prints its path last:
#   /usr/bin/vswitchd, /usr/bin/vswitchctl, /usr/lib/cni/vswitch (the CNI plugin, type
#   and IPAM type "vswitch"), the systemd unit vswitchd.service, /etc/vswitch/vswitchd.conf,
#   manual pages, bash completion, and maintainer scripts that make the state directory
#   and enable the unit. Dependencies come from the binaries' shared libraries
#   (dpkg-shlibdeps), so the package asks for exactly the DPDK it was built against.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
setup_machine
cargo build --release --workspace --bins -q

BIN=target/release
VERSION="$(sed -n "/^\[workspace.package\]/,/^\[/s/^version = \"\(.*\)\"/\1/p" Cargo.toml)"
# Builds of later commits sort later, so an upgrade is an upgrade.
if git rev-parse -q HEAD >/dev/null 2>&1; then
    VERSION="$VERSION+$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S).g$(git rev-parse --short=8 HEAD)"
fi
ARCH="$(dpkg --print-architecture)"
NAME="vswitch_${VERSION}_${ARCH}"
OUT=target/deb
STAGE="$OUT/$NAME"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"

install -D -m 0755 "$BIN/vswitchd" "$STAGE/usr/bin/vswitchd"
install -D -m 0755 "$BIN/vswitchctl" "$STAGE/usr/bin/vswitchctl"
install -D -m 0755 "$BIN/vswitch-cni" "$STAGE/usr/lib/cni/vswitch"
strip --strip-debug "$STAGE/usr/bin/vswitchd" "$STAGE/usr/bin/vswitchctl" "$STAGE/usr/lib/cni/vswitch"
install -D -m 0644 dist/deb/vswitchd.service "$STAGE/lib/systemd/system/vswitchd.service"
install -D -m 0644 dist/deb/vswitchd.conf "$STAGE/etc/vswitch/vswitchd.conf"
mkdir -p "$STAGE/usr/share/man/man8" "$STAGE/usr/share/bash-completion/completions" "$STAGE/usr/share/doc/vswitch"
"$BIN/vswitchd" --manpage | gzip -9n > "$STAGE/usr/share/man/man8/vswitchd.8.gz"
"$BIN/vswitchctl" manpage | gzip -9n > "$STAGE/usr/share/man/man8/vswitchctl.8.gz"
"$BIN/vswitchctl" completion bash > "$STAGE/usr/share/bash-completion/completions/vswitchctl"
gzip -9n < README.md > "$STAGE/usr/share/doc/vswitch/README.md.gz"
for s in postinst prerm postrm; do install -m 0755 "dist/deb/$s" "$STAGE/DEBIAN/$s"; done
echo /etc/vswitch/vswitchd.conf > "$STAGE/DEBIAN/conffiles"

# dpkg-shlibdeps wants a source package around the binaries.
SHLIBS="$(mktemp -d)"
mkdir -p "$SHLIBS/debian"
printf 'Source: vswitch\n\nPackage: vswitch\nArchitecture: any\n' > "$SHLIBS/debian/control"
DEPENDS="$(cd "$SHLIBS" && dpkg-shlibdeps -O "$OLDPWD/$STAGE/usr/bin/vswitchd" "$OLDPWD/$STAGE/usr/bin/vswitchctl" \
    "$OLDPWD/$STAGE/usr/lib/cni/vswitch" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
rm -rf "$SHLIBS"
[ -n "$DEPENDS" ] || die "dpkg-shlibdeps found no dependencies"
# EAL loads the poll-mode drivers of virtual devices as plugins, which no binary
# links: the ones the switch's ports use go in as the same DPDK's packages.
DPDK_ABI="$(echo "$DEPENDS" | sed -n 's/.*librte-eal\([0-9]*\).*/\1/p')"
for pmd in net-tap net-virtio net-af-packet net-pcap net-null net-ring; do
    DEPENDS="$DEPENDS, librte-$pmd$DPDK_ABI"
done

cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: vswitch
Version: $VERSION
Architecture: $ARCH
Maintainer: vswitch developers <vswitch@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
Depends: $DEPENDS
Recommends: dpdk, ethtool, iproute2
Suggests: podman, containerd
Section: net
Priority: optional
Description: userspace DPDK virtual switch for cloud and container hosts
 Poll-mode cores forward packets between VM and container ports (vhost-user,
 virtio, kernel interfaces) and the host's uplink, with per-tenant L2 switching,
 VXLAN, stateful security groups, services and QoS. vswitchctl changes the tables
 while traffic flows; the CNI plugin attaches containers.
CONTROL

dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT/$NAME.deb" >/dev/null
rm -rf "$STAGE"
echo "$PWD/$OUT/$NAME.deb"
