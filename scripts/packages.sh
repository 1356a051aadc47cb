# Debian packages the project needs, installed when missing (as root) or
# named in one apt-get line (otherwise). Sourced by the demo and by .ci/run.
DEMO_PACKAGES="snmpd snmp libvirt0"
TEST_PACKAGES="snmpd snmp snmptrapd libvirt0 libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 gcc binutils smitools iproute2 util-linux prometheus-snmp-exporter zabbix-server-pgsql zabbix-frontend-php php-cli php-pgsql php8.2-cgi postgresql python3-yaml"

# Node >= 20 (package.json "engines"), else one line saying where to get it.
require_node20() {
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -lt 20 ]; then
    echo "$1 needs Node.js >= 20 (this is $(node --version 2>/dev/null || echo 'no node')):" \
         "Debian 13's nodejs, or NodeSource's package on Debian 12."
    exit 1
  fi
}

missing_packages() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[@]:-}"
}

ensure_packages() {
  local list
  case "$1" in demo) list=$DEMO_PACKAGES ;; *) list=$TEST_PACKAGES ;; esac
  # shellcheck disable=SC2086
  local missing; missing=$(missing_packages $list)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "Missing Debian packages. Install them with:"
    echo "  sudo apt-get install -y --no-install-recommends $missing"
    exit 1
  fi
  echo "Installing: $missing"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d stops the packages' own services from starting: we run private daemons.
  local policy=/usr/sbin/policy-rc.d created=
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
  [ -n "$created" ] && rm -f "$policy"
  return 0
}
