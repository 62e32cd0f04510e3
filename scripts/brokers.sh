#!/usr/bin/env bash
# Installs what the cross-node tests start themselves: Debian's redis-server and redis-tools
# (redis-cli, for `--cluster create`) and nats-server. Does nothing when they are there.
# The tests start their own servers on free loopback ports and stop them by PID; nothing is
# left running and no system service is used.
set -euo pipefail
missing=()
command -v redis-server > /dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli > /dev/null 2>&1 || missing+=(redis-tools)
command -v nats-server > /dev/null 2>&1 || missing+=(nats-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== brokers: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The packages' own services are not wanted (the tests start their servers): policy-rc.d
  # keeps them from starting where it is honoured.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
