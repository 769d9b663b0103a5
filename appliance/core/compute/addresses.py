"""Guest addresses (and so MACs, ``network.mac_for_ip``): who may get which.

A freed address is *not* handed out again at once: traffic meant for the
previous guest (a UDP client still sending to a removed ingress port, a TCP
peer retransmitting, a neighbour's ARP cache) would reach the next tenant.
So allocation is least-recently-used with a minimum quarantine:

1. a free address this same user released (oldest release first), even in
   quarantine: the traffic it may still receive was meant for the same
   tenant, so nothing leaks, and a create/delete loop keeps cycling through
   the user's own addresses instead of putting the whole subnet in
   quarantine (a user never has more addresses in quarantine than it held
   containers at once, i.e. ``max_containers_per_user``);
2. addresses never handed out, lowest first;
3. else the address released longest ago, if that was at least
   ``Config.guest_address_quarantine_seconds`` ago;
4. else the create fails (Conflict, naming the quarantine).

Who released an address is kept in ``guest_address_owner`` (user public
id; its own table so existing databases need no migration).

Every handed-out address has a row here (``released_at`` NULL while a
container holds it). An address whose container vanished without
``release`` (rows deleted by ``appliance user rm`` while the core was down)
starts its quarantine when allocation first notices it is free.
Callers run on the loop thread inside the create's transaction, so two
creates cannot race.
"""
from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable

import peewee as pw

from appliance.core import db
from appliance.core.db import BaseModel
from appliance.host.network import NetworkError, gateway_ip


class GuestAddress(BaseModel):
    id = pw.AutoField()  # what peewee adds when a model has no primary key; named for the type checker
    ip = pw.CharField(max_length=45, unique=True)
    released_at = pw.BigIntegerField(null=True)  # NULL: in use (or freed unnoticed)

    class Meta:
        table_name = "guest_address"


class GuestAddressOwner(BaseModel):
    ip = pw.CharField(max_length=45, unique=True)
    owner = pw.CharField(max_length=32)  # public id of the user whose container released it last

    class Meta:
        table_name = "guest_address_owner"


db.register(GuestAddress, GuestAddressOwner)


def allocate(subnet: str, used: Iterable[str], quarantine_seconds: int, now: float | None = None,
             owner: str | None = None) -> str:
    """Pick an address for a new container of user ``owner`` (public id) and
    record it as in use."""
    now = int(time.time() if now is None else now)
    net = ipaddress.ip_network(subnet)
    used = {str(ipaddress.ip_address(u)) for u in used}
    known = {a.ip: a for a in GuestAddress.select()}
    for ip in used - set(known):  # held by containers created before this table existed
        known[ip] = GuestAddress.create(ip=ip, released_at=None)
    taken = used | {gateway_ip(subnet)}
    if owner:
        own = [a for a in GuestAddress.select().join(GuestAddressOwner, on=(GuestAddress.ip == GuestAddressOwner.ip))
               .where((GuestAddressOwner.owner == owner) & GuestAddress.released_at.is_null(False))
               if a.ip not in taken and ipaddress.ip_address(a.ip) in net]
        if own:
            best = min(own, key=lambda a: (a.released_at, ipaddress.ip_address(a.ip)))
            GuestAddress.update(released_at=None).where(GuestAddress.id == best.id).execute()
            return best.ip
    for host in net.hosts():
        ip = str(host)
        if ip not in taken and ip not in known:
            GuestAddress.create(ip=ip, released_at=None)
            GuestAddressOwner.delete().where(GuestAddressOwner.ip == ip).execute()
            return ip
    free = [a for ip, a in known.items() if ip not in taken and ipaddress.ip_address(ip) in net]
    for a in free:
        if a.released_at is None:  # freed without release(): its quarantine starts now
            a.released_at = now
            a.save()
    ready = [a for a in free if a.released_at is not None and a.released_at <= now - quarantine_seconds]
    if not ready:
        if free:
            wait = min(a.released_at for a in free if a.released_at is not None) + quarantine_seconds - now
            raise NetworkError(f"no free guest address in {subnet}: {len(free)} freed address(es) are in "
                               f"quarantine for another {wait} s (guest_address_quarantine_seconds)")
        raise NetworkError(f"no free guest address left in {subnet}")
    best = min(ready, key=lambda a: (a.released_at, ipaddress.ip_address(a.ip)))
    GuestAddress.update(released_at=None).where(GuestAddress.id == best.id).execute()
    # a new holder: until it releases, no earlier releaser may claim the address as its own
    GuestAddressOwner.delete().where(GuestAddressOwner.ip == best.ip).execute()
    return best.ip


def release(ip: str, now: float | None = None, owner: str | None = None) -> None:
    """The container holding ``ip`` (of user ``owner``) is gone: start its quarantine."""
    stamp = int(time.time() if now is None else now)
    updated = GuestAddress.update(released_at=stamp).where(GuestAddress.ip == ip).execute()
    if not updated:
        GuestAddress.create(ip=ip, released_at=stamp)
    GuestAddressOwner.delete().where(GuestAddressOwner.ip == ip).execute()
    if owner:
        GuestAddressOwner.create(ip=ip, owner=owner)
