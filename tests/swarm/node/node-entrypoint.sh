#!/bin/sh
# Start the node's Docker Engine (PID 1 of the node container).
#
# cgroup v1 (this project's machines; measured): the harness runs the node with `--cgroupns host`
# and the host's /sys/fs/cgroup mounted, and dockerd uses it as it is.
#
# cgroup v2 (GitHub's runners, Docker Desktop; NOT verified here, where the host has cgroup v1):
# the harness runs the node with `--cgroupns private` instead. A non-privileged container sees its
# cgroup2 mount read-only, and a cgroup v2 parent that holds processes cannot delegate
# controllers to children ("no internal processes"), so, as moby's own dind script does: remount
# it read-write, move every process of the node into a child cgroup `init`, and enable all
# controllers for the subtree in which dockerd makes its containers' cgroups.
set -eu
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
        >/sys/fs/cgroup/cgroup.subtree_control || true
fi
exec dockerd --host unix:///var/run/docker.sock --log-level warn "$@"
