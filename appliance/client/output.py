"""What commands print: aligned columns for people, ``--json`` for scripts."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click


def json_option(f: Callable) -> Callable:
    """``--json`` on a command (also accepted before the command: ``appliance --json ls``)."""
    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(dict)["json"] = True
        return value
    return click.option("--json", "as_json", is_flag=True, expose_value=False, callback=remember,
                        help="Print the result as JSON.")(f)


def wants_json() -> bool:
    ctx = click.get_current_context()
    root = ctx.find_root()
    return bool((root.obj or {}).get("json") or (ctx.obj or {}).get("json"))


def emit(data: Any, human: Callable[[Any], None] | None = None) -> None:
    """``data`` as JSON under --json, else through ``human`` (or as JSON when there is none)."""
    if wants_json() or human is None:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        human(data)


def table(rows: Iterable[dict], columns: Sequence[tuple[str, str]]) -> None:
    """Rows as aligned columns under upper-case headers; ``columns`` = (field, header)."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    heads = [head for _, head in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    for line in [heads, *cells]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def fields(row: dict, keys: Sequence[str]) -> None:
    """One object as ``key: value`` lines."""
    width = max(len(k) for k in keys)
    for k in keys:
        click.echo(f"{k + ':':<{width + 1}} {_cell(row.get(k))}")


def when(seconds: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds)) if seconds else "-"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
