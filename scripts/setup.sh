#!/usr/bin/env bash
# Sets up everything plumb and its lab need on a Debian 12 machine, as root: Debian packages, npm
# dependencies, the TypeScript build, and the cached droplet root filesystem. Safe to run again:
# each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: the lab boots droplets as containers and needs root (sudo npm run setup)" >&2
  exit 1
fi

# debootstrap builds the droplet image; systemd-container boots it; iptables NATs droplets out;
# pebble is the ACME server; haproxy is the load balancers' proxy; openssh-client is `plumb adopt`'s SSH;
# dbus-daemon is the bus the agent's D-Bus client is tested against (test/unit/dbus.test.ts);
# the rest are the host tools the lab drives.
packages=(debootstrap systemd-container iptables pebble haproxy openssh-client openssl iproute2 util-linux procps ca-certificates curl dbus-daemon)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
node test/dist/lab/cli.js prepare
