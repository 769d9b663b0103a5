"""The REST route table, derived from the proto's google.api.http bindings."""
from __future__ import annotations

import re
from dataclasses import dataclass

from google.api import annotations_pb2

from appliance.contract import METHODS, Method

_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    verb: str
    template: str
    body: str
    response_body: str
    method: Method
    # 0 for the rule itself, 1.. for its additional_bindings (in proto order).
    binding: int = 0

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PARAM.findall(self.template))

    @property
    def pattern(self) -> str:
        """Tornado path regex with one named group per path parameter."""
        parts, pos = [], 0
        for m in _PARAM.finditer(self.template):
            parts.append(re.escape(self.template[pos:m.start()]))
            parts.append(f"(?P<{m.group(1)}>[^/]+)")
            pos = m.end()
        parts.append(re.escape(self.template[pos:]))
        return "".join(parts) + "$"

    @property
    def specificity(self) -> tuple:
        """Sort key: a literal segment beats a parameter at the first difference."""
        return tuple(1 if s.startswith("{") else 0 for s in self.template.strip("/").split("/"))


def _bindings(rule):
    yield rule
    yield from rule.additional_bindings


def build_routes(methods=None) -> list[Route]:
    routes = []
    for method in (methods or METHODS).values():
        opts = method.descriptor.GetOptions()
        if not opts.HasExtension(annotations_pb2.http):
            continue
        rule = opts.Extensions[annotations_pb2.http]
        for index, binding in enumerate(_bindings(rule)):
            verb = binding.WhichOneof("pattern")
            template = getattr(binding, verb)
            routes.append(Route(verb.upper(), template, binding.body, binding.response_body, method, index))
    return sorted(routes, key=lambda r: (r.specificity, r.template, r.verb))
