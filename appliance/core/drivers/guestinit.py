"""The init script the LXC driver writes into every guest at each start
(``/usr/local/sbin/appliance-init``): it sets the hostname, starts sshd and
reaps orphans; on SIGTERM it forwards TERM to every process and exits, which
ends the guest. With a v1 pids hierarchy it first waits for the host to move
it into its pids cgroup, takes a cgroup namespace of its own and mounts the
cgroup hierarchies again inside it (docs/isolation.md, "pids limit" and
"cgroup view")."""

INIT_PIDS_GATE = """# Nothing runs before the host has moved this init into the guest's pids
# cgroup; then a cgroup namespace rooted at the guest's own cgroups. Nobody
# moves an init that libvirt restarted by itself (a reboot from inside):
# after 30 s it gives up, and the guest stops.
if [ "$1" != --cgroupns ]; then
  n=0
  while grep -q '^[0-9]*:pids:/$' /proc/self/cgroup; do
    n=$((n+1)); [ $n -gt 6000 ] && exit 1
    sleep 0.005
  done
  exec unshare --cgroup "$0" --cgroupns
fi
# libvirt's cgroup mounts are binds of the host's whole hierarchies (every
# guest's cgroups in sight): mount them again, now rooted at our own cgroups.
# A named hierarchy (name=systemd) has no guest cgroup: just unmounted.
grep ' cgroup ' /proc/self/mounts | while read -r _ dir _ opts _; do
  umount "$dir" || continue
  case ",$opts," in *,name=*) ;; *) mount -t cgroup -o "$opts" cgroup "$dir" ;; esac
done
"""
INIT_SCRIPT = """#!/bin/sh
# Written by the appliance at every start of this guest.
exec >/var/log/appliance-init.log 2>&1
{pids_gate}hostname -F /etc/hostname
mkdir -p /run/sshd && chmod 0755 /run/sshd
ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A
/usr/sbin/sshd -D &
trap 'kill -TERM -1; sleep 0.3; exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""
