#!/usr/bin/env bash
# Installs the Debian packages the appliance and its tests need, once.
# Idempotent: only missing packages are installed. Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
packages=(
  # build of python extensions (libvirt-python, argon2) and the venv
  python3 python3-venv python3-dev gcc pkg-config
  # guests: libvirt LXC, networking, image build
  libvirt-daemon libvirt-daemon-driver-lxc libvirt-clients libvirt-dev
  dnsmasq-base nftables iptables iproute2 debootstrap e2fsprogs
  # ingress: delete the conntrack entries of removed rules and stopped guests
  conntrack
  # guests' seccomp filter: libseccomp, and libc headers for its small wrapper
  libseccomp2 libc6-dev
  # reaching guests and testing as a user does (openssl: the ingress test's TLS client)
  openssh-client openssh-server curl openssl wrk nginx-light
  # test_domain_xml validates the rendered XML against libvirt's schemas
  libxml2-utils
  # ingress on 80/443 (Host/SNI routing; the core runs its own instance)
  haproxy
  # the PostgreSQL test runs a private cluster of Debian's server (Unix socket only)
  postgresql
  # the install test: a systemd test host under nspawn; `vagrant validate` of the lab
  systemd-container vagrant vagrant-libvirt
  # the dashboard: its build (node, npm, esbuild from npm) and its browser tests
  nodejs chromium chromium-driver
)
# Debian's npm, unless a node from elsewhere (e.g. NodeSource's) already brings its own:
# Debian's npm package would conflict with that node.
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Prometheus test runs Debian's server itself on a free loopback port: the
# package's own service must neither start now (a policy-rc.d refusing starts,
# for this install only) nor at boot.
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed"; then
  export DEBIAN_FRONTEND=noninteractive
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi
