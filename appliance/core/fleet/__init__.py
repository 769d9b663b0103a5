"""The hosts of one cloud: who they are, whether they are alive, how their cores
reach each other (docs/cluster.md). Below compute and cluster; imports only
core and the shared modules."""
