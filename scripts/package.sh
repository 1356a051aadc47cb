#!/usr/bin/env bash
# npm run package: a Debian package of the agent, built with dpkg-deb from
# this tree. Output: build/vmm-agentx_<version>_<arch>.deb.
#
#   /usr/lib/vmm-agentx/          the compiled agent, its production node_modules, the launchers
#   /usr/bin/vmm-agentx, check_vmm  links to the launchers
#   /lib/systemd/system/vmm-agentx.service
#   /etc/vmm-agentx.conf          a conffile
#   /usr/share/snmp/mibs/         the MIB modules, so `snmpwalk -m +VM-MIB` works system-wide
#                                 (with the standard ones Debian's free packages lack)
#   /usr/share/doc/vmm-agentx/    README, the snmpd snippets, the integrations
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

command -v dpkg-deb >/dev/null || { echo "npm run package needs dpkg-deb (Debian's dpkg package)"; exit 1; }
VERSION=$(node -p 'require("./package.json").version')
ARCH=$(dpkg --print-architecture)
NAME=vmm-agentx
OUT="$ROOT/build"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PKG="$STAGE/${NAME}_${VERSION}_${ARCH}"
LIB="$PKG/usr/lib/$NAME"

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build >/dev/null

mkdir -p "$LIB/bin" "$PKG/usr/bin" "$PKG/lib/systemd/system" "$PKG/etc" "$PKG/usr/share/snmp/mibs" \
  "$PKG/usr/share/doc/$NAME" "$PKG/DEBIAN"
# The agent as compiled, without the benches; the launchers find dist/src/cli.js beside bin/.
mkdir -p "$LIB/dist"
cp -r dist/agentx dist/src "$LIB/dist/"
find "$LIB/dist" -name '*.map' -delete
cp package.json "$LIB/"
for launcher in bin/*; do cp "$launcher" "$LIB/bin/"; done
# The production dependencies as `npm ci` installed them here (no network):
# each package's own files, its nested node_modules being listed on their own.
npm ls --omit=dev --all --parseable | tail -n +2 | while read -r dir; do
  dest="$LIB/${dir#"$ROOT"/}"
  mkdir -p "$dest"
  (cd "$dir" && tar --exclude=./node_modules -cf - .) | (cd "$dest" && tar -xf -)
done
for launcher in "$LIB"/bin/*; do ln -s "../lib/$NAME/bin/$(basename "$launcher")" "$PKG/usr/bin/$(basename "$launcher")"; done

cp examples/vmm-agentx.service examples/vmm-mcastd.service "$PKG/lib/systemd/system/"
cp examples/vmm-agentx.conf "$PKG/etc/vmm-agentx.conf"
cp examples/vmm-mcastd.conf "$PKG/etc/vmm-mcastd.conf"
cp mib/*.txt "$PKG/usr/share/snmp/mibs/"
# What VM-MIB and VMM-AGENTX-MIB import and Debian ships only in non-free snmp-mibs-downloader
# (which puts its copies in the ietf/ and iana/ subdirectories: no file is shared).
for m in SNMPv2-SMI SNMPv2-TC SNMPv2-CONF IF-MIB IANAifType-MIB; do
  cp "node_modules/net-snmp/lib/mibs/$m.mib" "$PKG/usr/share/snmp/mibs/$m.txt"
done
cp README.md "$PKG/usr/share/doc/$NAME/"
cp -r examples/snmpd "$PKG/usr/share/doc/$NAME/"
for d in zabbix icinga2 nagios prometheus; do [ -d "examples/$d" ] && cp -r "examples/$d" "$PKG/usr/share/doc/$NAME/"; done
cat > "$PKG/usr/share/doc/$NAME/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $NAME
License: BSD-2-Clause
Comment: The MIB modules restated from RFCs are under the IETF Trust's terms (see each RFC);
 the bundled node modules keep their own licenses (see /usr/lib/$NAME/node_modules/*/LICENSE*).
EOF

INSTALLED_KB=$(du -sk "$PKG" | cut -f1)
cat > "$PKG/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: vmm-agentx developers <vmm-agentx@localhost>
Installed-Size: $INSTALLED_KB
Depends: nodejs (>= 20), libvirt0, snmpd, adduser
Recommends: snmp
Section: net
Priority: optional
Homepage: https://localhost/vmm-agentx
Description: SNMP AgentX sub-agent serving VM-MIB (RFC 7666) from libvirt
 vmm-agentx attaches to Net-SNMP's snmpd as an AgentX sub-agent and serves the
 virtual-machine MIB (RFC 7666) and the project's VMM-AGENTX-MIB (live
 migration progress, multicast groups per VM) from libvirt and the host kernel.
 Node.js 20 or later is needed: Debian 13's own, or NodeSource's on Debian 12.
 Also ships check_vmm, a Nagios/Icinga plugin that needs only SNMP, and
 vmm-mcastd, the multicast mobility agent (proxy joins and unicast relays
 that keep a VM's multicast streams across a live migration).
EOF
printf '%s\n' /etc/vmm-agentx.conf /etc/vmm-mcastd.conf > "$PKG/DEBIAN/conffiles"

cat > "$PKG/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd vmm-agentx >/dev/null; then
    adduser --system --group --no-create-home --home /var/lib/vmm-agentx --quiet vmm-agentx
  fi
  # Read-only libvirt access (group libvirt) and the AgentX socket (group snmp, see agentXPerms).
  for group in libvirt snmp; do
    if getent group "$group" >/dev/null; then adduser --quiet vmm-agentx "$group" >/dev/null; fi
  done
  install -d -o vmm-agentx -g vmm-agentx -m 0700 /var/lib/vmm-agentx
  if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
  echo "vmm-agentx: add /usr/share/doc/vmm-agentx/snmpd/master-agentx.conf to snmpd's configuration," \
       "check with 'vmm-agentx --check --config /etc/vmm-agentx.conf', then 'systemctl enable --now vmm-agentx'."
fi
exit 0
EOF
cat > "$PKG/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  for unit in vmm-agentx.service vmm-mcastd.service; do
    systemctl stop "$unit" >/dev/null 2>&1 || true
    systemctl disable "$unit" >/dev/null 2>&1 || true
  done
fi
exit 0
EOF
cat > "$PKG/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  rm -rf /var/lib/vmm-agentx
  if getent passwd vmm-agentx >/dev/null; then deluser --system --quiet vmm-agentx >/dev/null || true; fi
  if getent group vmm-agentx >/dev/null; then delgroup --system --quiet vmm-agentx >/dev/null || true; fi
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
exit 0
EOF
chmod 0755 "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/prerm" "$PKG/DEBIAN/postrm"

mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$PKG" "$OUT/${NAME}_${VERSION}_${ARCH}.deb" >/dev/null
echo "$OUT/${NAME}_${VERSION}_${ARCH}.deb"
