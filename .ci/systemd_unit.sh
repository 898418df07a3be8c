#!/usr/bin/env bash
# Check the shipped unit, contrib/cliproxy.service, with systemd-analyze: its exposure
# score must stay at or below MAX_EXPOSURE ("OK"), and "verify" must find nothing wrong.
# systemd-analyze comes with Debian's systemd package, installed here when missing (as
# root); without it and without root, this says so and skips.
set -euo pipefail
cd "$(dirname "$0")/.."
UNIT=contrib/cliproxy.service
MAX_EXPOSURE=2.0
# "security --offline" appeared in systemd 250.
MIN_SYSTEMD=250

skip() { echo "SKIPPED checking $UNIT: $*"; exit 0; }

if ! command -v systemd-analyze >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's systemd package for systemd-analyze"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
  else
    skip "systemd-analyze is missing and this is not root on Debian (run 'apt-get install systemd' as root)"
  fi
fi
version=$(systemd-analyze --version | head -1 | awk '{print $2}')
[ "${version%%.*}" -ge "$MIN_SYSTEMD" ] || skip "systemd-analyze $version is older than $MIN_SYSTEMD (no --offline)"

report=$(systemd-analyze security --offline=true "$UNIT")
score=$(sed -n 's/.*Overall exposure level for cliproxy\.service: \([0-9.]*\).*/\1/p' <<<"$report")
if [ -z "$score" ]; then
  echo "$report"; echo "FAILED: no exposure score for $UNIT"; exit 1
fi
if ! awk -v score="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(score <= max) }'; then
  echo "$report" | grep -v '^✓'
  echo "FAILED: $UNIT exposure $score is above $MAX_EXPOSURE"; exit 1
fi
echo "ok: $UNIT exposure $score (at most $MAX_EXPOSURE)"

# verify wants ExecStart's program to exist: a copy of the unit names this machine's python3.
python=$(command -v python3)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed "s|^ExecStart=/usr/bin/python3 |ExecStart=$python |" "$UNIT" > "$scratch/cliproxy.service"
if ! output=$(systemd-analyze verify "$scratch/cliproxy.service" 2>&1) || grep -q cliproxy <<<"$output"; then
  echo "$output"; echo "FAILED: systemd-analyze verify $UNIT"; exit 1
fi
echo "ok: systemd-analyze verify $UNIT"
