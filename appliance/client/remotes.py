"""Remotes (an appliance's URL and the token to use there) in the user's config dir.

One JSON file, ``<click.get_app_dir("appliance")>/config.json`` (on Linux
``$XDG_CONFIG_HOME/appliance`` or ``~/.config/appliance``; ``APPLIANCE_CLIENT_CONFIG``
names another file), mode 0600, replaced atomically (temp file + rename), so a
crash never leaves half a token and no other user ever reads one.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click


@dataclass
class Remote:
    url: str
    token: str = ""
    username: str = ""
    # "session" (from a password login) or "api" (an API token given with --token)
    kind: str = "session"


@dataclass
class Store:
    current: str = ""
    remotes: dict[str, Remote] = field(default_factory=dict)


def config_path() -> Path:
    override = os.environ.get("APPLIANCE_CLIENT_CONFIG")
    if override:
        return Path(override)
    return Path(click.get_app_dir("appliance")) / "config.json"


def load() -> Store:
    path = config_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return Store()
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot read {path}: {e}") from e
    remotes = {name: Remote(**{k: v for k, v in r.items() if k in Remote.__dataclass_fields__})
               for name, r in (raw.get("remotes") or {}).items()}
    return Store(current=raw.get("current", ""), remotes=remotes)


def save(store: Store) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"current": store.current, "remotes": {n: asdict(r) for n, r in store.remotes.items()}}
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)   # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def name_for(url: str) -> str:
    """A default remote name from a URL: its host (``127.0.0.1:8080`` -> ``127.0.0.1``)."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
