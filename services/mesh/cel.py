"""A tiny builder for parsed CEL expressions (google.api.expr.v1alpha1.Expr) as plain dicts.

Envoy 1.40 refuses CEL source strings in RBAC (`cel_expr_string`), so the policy is written as
the AST it would parse to. Each node also keeps the CEL source it stands for, so the rendered
config can show a human-readable form next to the AST. Only what the tenant check needs:
identifiers, field selection, indexing, constants, ==, || and &&.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cel:
    ast: dict[str, Any]
    src: str


class CelBuilder:
    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def _node(self, src: str, **body: Any) -> Cel:
        return Cel({"id": next(self._ids), **body}, src)

    def ident(self, name: str) -> Cel:
        return self._node(name, ident_expr={"name": name})

    def const(self, value: str | int) -> Cel:
        if isinstance(value, int):
            return self._node(str(value), const_expr={"int64_value": value})
        return self._node(json.dumps(value), const_expr={"string_value": value})

    def select(self, operand: Cel, field: str) -> Cel:
        return self._node(f"{operand.src}.{field}", select_expr={"operand": operand.ast, "field": field})

    def _call(self, src: str, function: str, *args: Cel) -> Cel:
        return self._node(src, call_expr={"function": function, "args": [a.ast for a in args]})

    def index(self, operand: Cel, key: str | int) -> Cel:
        key_node = self.const(key)
        return self._call(f"{operand.src}[{key_node.src}]", "_[_]", operand, key_node)

    def eq(self, left: Cel, right: Cel) -> Cel:
        return self._call(f"{left.src} == {right.src}", "_==_", left, right)

    def or_(self, left: Cel, right: Cel) -> Cel:
        return self._call(f"({left.src}) || ({right.src})", "_||_", left, right)

    def and_(self, left: Cel, right: Cel) -> Cel:
        return self._call(f"({left.src}) && ({right.src})", "_&&_", left, right)

    def path(self, root: str, field: str, *keys: str | int) -> Cel:
        """`root.field[k1][k2]...`: field selection, then map/list indexing."""
        node = self.select(self.ident(root), field)
        for key in keys:
            node = self.index(node, key)
        return node
