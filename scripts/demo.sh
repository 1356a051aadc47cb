#!/usr/bin/env bash
# npm run demo: a private, unprivileged snmpd with the agent attached over a
# unix socket, serving the shipped libvirt test-driver fixture; prints a walk
# of VM-MIB and stops both daemons (by PID) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

source scripts/packages.sh
require_node20 "npm run demo"
ensure_packages demo

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run --silent build

LAB=$(mktemp -d /tmp/vmm-agentx-demo.XXXXXX)
SNMPD_PID= AGENT_PID=
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  [ -n "$SNMPD_PID" ] && kill "$SNMPD_PID" 2>/dev/null && wait "$SNMPD_PID" 2>/dev/null || true
  rm -rf "$LAB"
}
trap cleanup EXIT

PORT=$(node -e 'const s=require("dgram").createSocket("udp4");s.bind(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
mkdir -p "$LAB/snmp/persist" "$LAB/client" "$LAB/state"
cat > "$LAB/snmp/snmpd.conf" <<CONF
agentAddress udp:127.0.0.1:$PORT
rocommunity public 127.0.0.1
master agentx
agentXSocket unix:$LAB/snmp/agentx.sock
agentXPerms 0660 0770
sysLocation vmm-agentx demo
sysContact demo@example.invalid
CONF

RUN_AS=()
if [ "$(id -u)" = 0 ]; then
  # snmpd needs no privilege here; run it as nobody, as the tests do.
  chown -R 65534:65534 "$LAB/snmp"
  chmod 0755 "$LAB"
  RUN_AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
SNMP_PERSISTENT_DIR="$LAB/snmp/persist" MIBS= "${RUN_AS[@]}" /usr/sbin/snmpd -f -Lo -C -I -smux \
  -c "$LAB/snmp/snmpd.conf" -p "$LAB/snmp/snmpd.pid" > "$LAB/snmpd.log" 2>&1 &
SNMPD_PID=$!
for _ in $(seq 50); do [ -S "$LAB/snmp/agentx.sock" ] && break; sleep 0.1; done
[ -S "$LAB/snmp/agentx.sock" ] || { echo "snmpd did not start:"; cat "$LAB/snmpd.log"; exit 1; }
if [ "$(id -u)" = 0 ]; then chmod 0666 "$LAB/snmp/agentx.sock"; fi

bin/vmm-agentx --libvirt-uri "test://$ROOT/examples/libvirt/demo-host.xml" \
  --agentx-socket "unix:$LAB/snmp/agentx.sock" --state-dir "$LAB/state" --log-level warn &
AGENT_PID=$!

export SNMP_PERSISTENT_DIR="$LAB/client" SNMPCONFPATH="$LAB/client"
# /usr/share/snmp/mibs holds NET-SNMP-MIB, under whose netSnmpPlaypen VMM-AGENTX-MIB lives.
printf 'mibdirs %s/mib:%s/node_modules/net-snmp/lib/mibs:/usr/share/snmp/mibs\nmibs SNMPv2-MIB:IF-MIB:VM-MIB:VMM-AGENTX-MIB\n' \
  "$ROOT" "$ROOT" > "$LAB/client/snmp.conf"
for _ in $(seq 100); do
  if snmpget -v2c -c public -t 1 -r 0 "127.0.0.1:$PORT" VM-MIB::vmNumber.0 2>/dev/null | grep -q INTEGER; then break; fi
  sleep 0.1
done
# vmUUID as raw octets: Net-SNMP's rendering of UUID-TC-MIB's hint drops
# leading zeros of octets (see scripts/uuid-column.js), so the walk and the
# table below get their UUIDs from this.
snmpwalk -v2c -c public -m '' -On -Ox "127.0.0.1:$PORT" .1.3.6.1.2.1.236.1.4.1.3 > "$LAB/uuids.txt"
echo "== snmpwalk -v2c -c public 127.0.0.1:$PORT VM-MIB::vmMIB"
snmpwalk -v2c -c public "127.0.0.1:$PORT" VM-MIB::vmMIB | node scripts/uuid-column.js "$LAB/uuids.txt"
echo
echo "== snmptable VM-MIB::vmTable (first 160 columns of text)"
snmptable -v2c -c public -Ci -Cf '|' "127.0.0.1:$PORT" VM-MIB::vmTable | node scripts/uuid-column.js "$LAB/uuids.txt" --table | cut -c1-160
echo
echo "== snmptable VMM-AGENTX-MIB::vmmMigrationTable (the project's extension: live migration; the first columns)"
snmptable -v2c -c public -Ci -Cf '|' "127.0.0.1:$PORT" VMM-AGENTX-MIB::vmmMigrationTable | cut -d'|' -f1-6,15-16
