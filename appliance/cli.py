"""The ``appliance`` command.

  appliance core | http | ssh        run one daemon in the foreground
  appliance up | down | status       start/stop all daemons in the background (make up/down)
  appliance user add NAME [--admin] [--display-name X]   (password from stdin)
  appliance user list | user rm NAME
  appliance cluster ca --out DIR                                  the cluster CA (once; kept after)
  appliance cluster cert --ca DIR --name HOST --ip ADDR [--ip ...] --out DIR   a host's certificate
  appliance db migrate --to postgresql://... [--from sqlite:///path]   (docs/cluster-migrate.md)
  appliance storage migrate --to seaweedfs [--final] [--jobs N] [--read-back]   (docs/seaweedfs-migrate.md)
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import os
import secrets
import sys

from appliance import config as config_mod
from appliance import logs, metricsdir, supervise
from appliance.core.auth import passwords
from appliance.core.compute import hostprep
from appliance.host import seaweedfs_embedded

# Steps `appliance up` runs before starting the daemons (host preparation:
# libvirtd, guest image, bridge) and `appliance down` runs after stopping them
# (guests, ingress proxy, the libvirtd that `up` started).
PREPARE_STEPS = [hostprep.prepare]
RELEASE_STEPS = [hostprep.release]


def _setup_logging(cfg, service: str) -> None:
    """JSON log lines on stderr naming *service*; ``<host>/<service>`` when the
    core serves other hosts (core_tcp), so entries of several hosts stay apart."""
    logs.setup(cfg.log_level, logs.source_name(service, cfg.node_name if cfg.core_tcp else ""))


def _open_db(cfg):
    from appliance.core.db import open_database
    supervise.private_data_dir(cfg)
    return open_database(cfg.database_url)


def _daemon(cfg, service: str) -> None:
    """What every daemon does first: logging, and the directory its Prometheus
    instruments share with the others (before prometheus_client is imported)."""
    _setup_logging(cfg, service)
    metricsdir.use(cfg.metrics_dir)


def cmd_core(cfg, args) -> int:
    _daemon(cfg, "core")
    from appliance.core.fleet.listener import ClusterSettingsError
    from appliance.core.server import serve
    try:
        asyncio.run(serve(cfg))
    except ClusterSettingsError as e:
        print(f"appliance core: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_http(cfg, args) -> int:
    _daemon(cfg, "http")
    from appliance.http.server import run
    return run(cfg)


def cmd_ssh(cfg, args) -> int:
    _daemon(cfg, "ssh")
    from appliance.ssh.server import serve
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    serve(cfg)
    return 0


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\n")


def ensure_admin(cfg) -> tuple[str, str | None]:
    """Create the first admin if missing. Returns (username, password or None if unknown)."""
    from appliance.core.auth import users
    from appliance.core.db import User
    _open_db(cfg)
    stored = cfg.data_path / "admin_password"
    password = os.environ.get("APPLIANCE_ADMIN_PASSWORD") or cfg.admin_password
    if User.get_or_none(User.username == cfg.admin_username) is None:
        if not password:
            password = stored.read_text().strip() if stored.exists() else secrets.token_urlsafe(12)
        users.create_user(cfg.admin_username, password, is_admin=True)
        fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return cfg.admin_username, password
    if stored.exists():
        return cfg.admin_username, stored.read_text().strip()
    return cfg.admin_username, None


def cmd_up(cfg, args) -> int:
    supervise.private_data_dir(cfg)
    for step in PREPARE_STEPS:
        step(cfg)
    username, password = ensure_admin(cfg)
    try:   # files on an embedded SeaweedFS: it serves before the core starts, which learns where
        env = seaweedfs_embedded.start(cfg)
    except (OSError, ValueError, RuntimeError) as e:   # TimeoutError is an OSError
        print(f"SeaweedFS did not start: {e}; see logs in {cfg.log_dir}", file=sys.stderr)
        return 1
    for name in supervise.SERVICES:
        supervise.start(cfg, name, env)
    scheme = "https" if cfg.tls_cert_file else "http"
    base = f"{scheme}://{cfg.http_host}:{cfg.http_port}"
    if not supervise.wait_healthy(f"{base}/healthz", timeout=60):
        print(f"appliance did not become healthy; see logs in {cfg.log_dir}", file=sys.stderr)
        return 1
    print(f"appliance is up (data in {cfg.data_dir}, logs in {cfg.log_dir})")
    print(f"  API:      {base}/api  {base}/compute  {base}/storage")
    print(f"  OpenAPI:  {base}/openapi.json")
    print(f"  SSH:      ssh <container-id>@{cfg.public_host} -p {cfg.ssh_port}")
    print(f"  admin:    {username} / {password if password else '(set earlier; unchanged)'}")
    if env:
        print(f"  files:    on SeaweedFS, filer {env['APPLIANCE_SEAWEEDFS_FILER']} (embedded, loopback)")
    return 0


def cmd_down(cfg, args) -> int:
    stopped = [name for name in reversed(supervise.SERVICES) if supervise.stop(cfg, name)]
    stopped += seaweedfs_embedded.stop(cfg)
    for step in RELEASE_STEPS:
        stopped += step(cfg)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_status(cfg, args) -> int:
    for name in supervise.SERVICES:
        pid = supervise.running_pid(cfg, name)
        print(f"{name}: {f'running (pid {pid})' if pid else 'stopped'}")
    for proc in seaweedfs_embedded.processes(cfg):
        print(f"weed-{proc.name}: {f'running (pid {proc.pid}, {proc.address})' if proc.running else 'stopped'}")
    return 0


def cmd_user(cfg, args) -> int:
    from appliance.core.auth import users
    from appliance.core.db import User
    from appliance.errors import AppError
    _open_db(cfg)
    try:
        if args.user_cmd == "add":
            password = _read_password("password: ")
            user = users.create_user(args.name, password, args.display_name, args.admin)
            print(f"created {user.username} ({user.public_id}){' admin' if user.is_admin else ''}")
        elif args.user_cmd == "list":
            for u in User.select().order_by(User.id):
                print(f"{u.public_id}\t{u.username}\t{u.display_name}\t{'admin' if u.is_admin else ''}")
        elif args.user_cmd == "rm":
            found = User.get_or_none(User.username == args.name)
            if found is None:
                print(f"no such user: {args.name}", file=sys.stderr)
                return 1
            asyncio.run(users.delete_user(found))
            print(f"removed {args.name}")
    except AppError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    return 0


def cmd_cluster(cfg, args) -> int:
    """Certificates of the cores' mutual TLS (docs/cluster-peers.md); one line per file."""
    from appliance.core.fleet import certs
    try:
        if args.cluster_cmd == "ca":
            written = certs.make_ca(args.out)
        else:
            written = certs.make_host_cert(args.ca, args.name, args.ip or [], args.out)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in written.paths:
        print(f"{'created' if written.created else 'kept'} {path}")
    return 0


def cmd_db(cfg, args) -> int:
    """db migrate: the host's SQLite database into PostgreSQL (core/dbmove.py)."""
    from appliance.core import dbmove
    source = args.source or cfg.database_url
    if args.source is None and supervise.running_pid(cfg, "core"):
        print("error: the core is running: stop the appliance first (appliance down)", file=sys.stderr)
        return 1
    print(f"moving {dbmove.shown(source)} -> {dbmove.shown(args.to)}")
    try:
        moved = dbmove.move(source, args.to)
    except dbmove.MoveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for table, rows in moved.counts:
        print(f"  {table:<22} {rows:>8} rows{'  verified' if moved.copied else '  already there'}")
    if moved.copied:
        print(f"copied {moved.rows} rows in {len(moved.counts)} tables; every count verified")
    else:
        print(f"nothing to do: the target already holds exactly these {moved.rows} rows; nothing changed")
    return 0


def cmd_storage(cfg, args) -> int:
    """storage migrate: local blobs into SeaweedFS (core/storage/migrate.py)."""
    from appliance.core.storage import migrate
    if args.final and supervise.running_pid(cfg, "core"):
        print("error: --final needs the core stopped (nothing may upload to this host's disk any more): "
              f"kill $(cat {supervise.pid_file(cfg, 'core')}), or systemctl stop appliance-core on every host",
              file=sys.stderr)
        return 1
    _open_db(cfg)
    say = lambda line: print(line, flush=True)  # noqa: E731
    if cfg.seaweedfs_embedded:   # this host's own SeaweedFS: started (or found running) as `up` would
        seaweed = dataclasses.replace(cfg, storage_backend="seaweedfs")
        try:
            seaweedfs_embedded.start(seaweed)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"error: the embedded SeaweedFS did not start: {e}; see logs in {cfg.log_dir}", file=sys.stderr)
            return 1
        cfg = dataclasses.replace(cfg, **seaweedfs_embedded.settings(seaweed))
        say(f"embedded SeaweedFS running, filer {cfg.seaweedfs_filer} (it keeps running: `appliance up` with "
            'storage_backend = "seaweedfs" uses it, `appliance down` stops it)')
    try:
        report = asyncio.run(migrate.migrate(cfg, say, jobs=args.jobs, read_back=args.read_back))
    except (migrate.MigrateError, migrate.FilerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return migrate.summary(report, say, final=args.final)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="appliance", description="A self-hosted cloud.")
    p.add_argument("--config", help="TOML settings file (default: $APPLIANCE_CONFIG or /etc/appliance/appliance.toml)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("core", help="run the core daemon in the foreground").set_defaults(fn=cmd_core)
    sub.add_parser("http", help="run the HTTP gateway in the foreground").set_defaults(fn=cmd_http)
    sub.add_parser("ssh", help="run the SSH gateway in the foreground").set_defaults(fn=cmd_ssh)
    sub.add_parser("up", help="start everything in the background and wait until healthy").set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop what 'up' started").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="show which daemons run").set_defaults(fn=cmd_status)
    user = sub.add_parser("user", help="manage users")
    user.set_defaults(fn=cmd_user)
    usub = user.add_subparsers(dest="user_cmd", required=True)
    add = usub.add_parser("add", help="add a user (password read from stdin)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--display-name")
    usub.add_parser("list", help="list users")
    rm = usub.add_parser("rm", help="remove a user and everything they own")
    rm.add_argument("name")
    cluster = sub.add_parser("cluster", help="certificates of a cluster's hosts")
    cluster.set_defaults(fn=cmd_cluster)
    csub = cluster.add_subparsers(dest="cluster_cmd", required=True)
    ca = csub.add_parser("ca", help="make the cluster CA (DIR/ca.pem, DIR/ca.key) unless it exists")
    ca.add_argument("--out", required=True, help="directory of the CA")
    cert = csub.add_parser("cert", help="a host's certificate signed by the CA (DIR/HOST.pem, DIR/HOST.key)")
    cert.add_argument("--ca", required=True, help="directory of the CA (ca.pem, ca.key)")
    cert.add_argument("--name", required=True, help="the host's name (host_name): the certificate's CN and DNS SAN")
    cert.add_argument("--ip", action="append", help="an address other cores reach it at (repeatable)")
    cert.add_argument("--out", required=True, help="directory to write HOST.pem and HOST.key")
    dbp = sub.add_parser("db", help="database operations")
    dbp.set_defaults(fn=cmd_db)
    dsub = dbp.add_subparsers(dest="db_cmd", required=True)
    mig = dsub.add_parser("migrate", help="copy the SQLite database into PostgreSQL (growing into a cluster)")
    mig.add_argument("--to", required=True, help="the PostgreSQL URL, postgresql://user:pass@host/db")
    mig.add_argument("--from", dest="source", help="the SQLite database (default: the configured one), "
                                                   "sqlite:///path")
    stp = sub.add_parser("storage", help="file storage operations")
    stp.set_defaults(fn=cmd_storage)
    ssub = stp.add_subparsers(dest="storage_cmd", required=True)
    smig = ssub.add_parser("migrate", help="copy the files on this host's disk into SeaweedFS (checksummed, "
                                           "resumable; docs/seaweedfs-migrate.md)")
    smig.add_argument("--to", required=True, choices=["seaweedfs"], help="the backend to copy into")
    smig.add_argument("--final", action="store_true",
                      help="the pass of the switch, with the core stopped (refused while `appliance up`'s core runs)")
    smig.add_argument("--jobs", type=int, default=4, help="files copied at once (default 4)")
    smig.add_argument("--read-back", action="store_true",
                      help="also read every copy back from SeaweedFS and compare its MD5")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.config:
        os.environ["APPLIANCE_CONFIG"] = args.config  # for the daemons `up` starts
    try:
        cfg = config_mod.load(args.config)
    except (OSError, ValueError) as e:   # a missing file, TOML syntax, a bad setting: one line, no traceback
        print(f"appliance: configuration error: {e}", file=sys.stderr)
        return 2
    passwords.configure(cfg.password_hash_memory_kib, cfg.password_hash_time_cost)
    if args.fn not in (cmd_core, cmd_http, cmd_ssh):
        _setup_logging(cfg, "cli")  # `up`, `down`, `user`: their own lines (host steps) on stderr
    return args.fn(cfg, args)


if __name__ == "__main__":
    # Run the importable module's main(): under ``python -m`` this file is
    # __main__, and registries such as PREPARE_STEPS live in appliance.cli.
    from appliance.cli import main as _main
    sys.exit(_main())
