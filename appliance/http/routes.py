"""The REST route table, derived from the proto's google.api.http bindings.

Only what the gateway implements is accepted, and anything else stops the
gateway at start-up with an error naming the method (``UnsupportedBinding``):
a verb of get/put/post/delete/patch; ``body`` either ``"*"`` (the whole
request message is the JSON body) or empty (no body); a path template of
literal segments and whole-segment ``{field}`` parameters, each naming a
scalar field of the request message (client-streaming uploads excepted: their
handler reads the parameters into the upload's header itself). So ``body: "spec"``, ``{name=files/*}``,
``{a.b}``, ``/{id}:cancel`` or ``/files/{name}.txt`` are refused rather than
served with some other meaning.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from google.api import annotations_pb2

from appliance.contract import METHODS, Method

_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_PARAM_SEGMENT = re.compile(r"\{([a-z_][a-z0-9_]*)\}$")
_LITERAL_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+$")
_VERBS = ("get", "put", "post", "delete", "patch")


class UnsupportedBinding(ValueError):
    """A google.api.http binding the gateway does not implement."""


@dataclass(frozen=True)
class ApiRoute:
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


def _check_template(method: Method, template: str) -> None:
    def refuse(why: str) -> UnsupportedBinding:
        return UnsupportedBinding(f"{method.path}: google.api.http path {template!r}: {why}; only literal "
                                  "segments and whole-segment {field} parameters are supported")

    if not template.startswith("/"):
        raise refuse("it must start with '/'")
    fields = method.descriptor.input_type.fields_by_name
    for segment in template[1:].split("/"):
        param = _PARAM_SEGMENT.match(segment)
        if param is None:
            if not _LITERAL_SEGMENT.match(segment):
                raise refuse(f"segment {segment!r} is not supported")
            continue
        if method.client_streaming:
            continue
        field = fields.get(param.group(1))
        if field is None or field.type == field.TYPE_MESSAGE or field.is_repeated:
            raise refuse(f"{segment} is not a scalar field of {method.descriptor.input_type.name}")


def _check_body(method: Method, body: str) -> None:
    if body not in ("", "*"):
        raise UnsupportedBinding(f"{method.path}: google.api.http body {body!r} is not supported; "
                                 "only \"*\" (the whole request message) or no body")


def build_routes(methods=None) -> list[ApiRoute]:
    """Every binding of every method, most specific first; UnsupportedBinding
    for a binding this gateway would not serve as declared."""
    routes = []
    for method in (methods or METHODS).values():
        opts = method.descriptor.GetOptions()
        if not opts.HasExtension(annotations_pb2.http):
            continue
        rule = opts.Extensions[annotations_pb2.http]
        for index, binding in enumerate(_bindings(rule)):
            verb = binding.WhichOneof("pattern")
            if verb not in _VERBS:
                raise UnsupportedBinding(f"{method.path}: google.api.http pattern {verb!r} is not supported; "
                                         f"only {', '.join(_VERBS)}")
            template = getattr(binding, verb)
            _check_template(method, template)
            _check_body(method, binding.body)
            routes.append(ApiRoute(verb.upper(), template, binding.body, binding.response_body, method, index))
    return sorted(routes, key=lambda r: (r.specificity, r.template, r.verb))
