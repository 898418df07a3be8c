#!/usr/bin/env bash
# Run .ci/systemd_live.py where PID 1 is not systemd (a CI VM or container run as root):
# boot systemd as PID 1 of new mount/PID/cgroup/UTS/IPC namespaces, on an overlay of "/"
# whose writes land in a tmpfs, so neither its boot (tmpfiles empties /tmp, for one) nor
# the install reaches this machine's files. /proc/sys and /sys are read-only inside, so no
# kernel setting changes either; only ci.target (journald) and what the test starts run.
# Anything this machine does not allow ends in "SKIPPED" and exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

skip() { echo "SKIPPED running the unit in a systemd sandbox: $*"; exit 0; }

[ "$(id -u)" -eq 0 ] || skip "not root (it mounts and boots systemd in namespaces)"
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd"
command -v unshare >/dev/null && command -v nsenter >/dev/null || skip "unshare/nsenter missing"
unshare --mount --pid --fork true 2>/dev/null || skip "namespaces are not allowed here"

# A cgroup of its own on the unified (v2) hierarchy, which the sandbox's systemd manages.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  CGROUP=/sys/fs/cgroup/cliproxy-ci-$$
elif [ -d /sys/fs/cgroup/unified ]; then
  CGROUP=/sys/fs/cgroup/unified/cliproxy-ci-$$
else
  skip "no cgroup v2 hierarchy"
fi
WORK=$(mktemp -d /var/tmp/cliproxy-ci-sandbox.XXXXXX)
SYSTEMD_PID=

cleanup() {
  if [ -n "$SYSTEMD_PID" ]; then kill -KILL "$SYSTEMD_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  if [ -d "$CGROUP" ]; then find "$CGROUP" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  rmdir "$CGROUP" 2>/dev/null || true
  rmdir "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

cat > "$WORK.boot" <<'EOF'
set -euo pipefail
WORK=$1
mount --make-rprivate /
mount -t tmpfs tmpfs "$WORK"
mkdir "$WORK/upper" "$WORK/work" "$WORK/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$WORK/upper,workdir=$WORK/work" "$WORK/root"
R=$WORK/root
mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
mount -t sysfs -o ro sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount --rbind /dev "$R/dev"
# Its own /dev/shm: RemoveIPC= empties it of the service user's files.
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
printf '[Unit]\nDescription=cliproxy CI sandbox\nDefaultDependencies=no\nWants=systemd-journald.service\n' \
  > "$R/etc/systemd/system/cliproxy-ci.target"
for unit in systemd-modules-load.service systemd-sysctl.service kmod-static-nodes.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$unit"
done
cd "$R"
mkdir -p .sandbox-old-root
pivot_root . .sandbox-old-root
umount -l /.sandbox-old-root
# Shared propagation, as on a booted host: systemd moves credential mounts into place.
mount --make-rshared /
exec env container=cliproxy-ci /lib/systemd/systemd --unit=cliproxy-ci.target
EOF

mkdir "$CGROUP"
(
  echo $BASHPID > "$CGROUP/cgroup.procs"
  exec unshare --pid --fork --mount --cgroup --uts --ipc bash "$WORK.boot" "$WORK"
) > "$WORK.log" 2>&1 &
UNSHARE_PID=$!

for _ in $(seq 60); do
  SYSTEMD_PID=$(pgrep -P "$UNSHARE_PID" || true)
  if [ -n "$SYSTEMD_PID" ]; then
    state=$(nsenter -t "$SYSTEMD_PID" -a systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
  fi
  sleep 0.5
done
rm -f "$WORK.boot"
case "${state:-}" in
  running|degraded) ;;
  *) echo "$(cat "$WORK.log")"; rm -f "$WORK.log"; skip "systemd did not come up in the sandbox (${state:-no PID 1})" ;;
esac
rm -f "$WORK.log"

echo "systemd $(nsenter -t "$SYSTEMD_PID" -a systemctl --version | head -1 | cut -d' ' -f2) is PID 1 of the sandbox"
nsenter -t "$SYSTEMD_PID" -a bash -c 'cd "$1" && exec python3 .ci/systemd_live.py' _ "$REPO"
