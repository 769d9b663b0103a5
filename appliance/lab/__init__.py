"""`make lab`: a cluster of three hosts on one machine (docs/cluster-lab.md).

Each lab host is a network namespace with a veth to a shared LAN bridge (in
a namespace of its own), and a long-lived mount namespace in which that
host's libvirtd and its appliance daemons run, so ``lxc:///`` there is that
host's libvirtd. One private PostgreSQL (a Unix socket every namespace
sees) holds the state of all three.
"""
