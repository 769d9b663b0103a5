"""appliance: a self-hosted cloud for your own machines."""
import os as _os

__version__ = "0.1.0"

# gRPC's fork handlers restart its threads in a forked child, and a
# multi-threaded child cannot setns() into a guest's mount namespace (EINVAL):
# the core forks helpers into guests (drivers/nsexec.py: exec, terminals).
# None of our processes uses gRPC in a forked child, so the handlers go.
# Set before grpc is first imported, whichever entry point runs.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
