"""The SSH gateway (``appliance ssh``): OpenSSH clients reach guests through it.

See docs/access.md. ``keys`` is shared with the core (which authorises the
gateway's guest-access key in every guest); ``server`` is the daemon.
"""
