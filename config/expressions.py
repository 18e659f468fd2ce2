"""Tiny arithmetic expressions for scenario files: ``0.002 + 0.0004 * weight``, ``t > 600``.

A scenario is data a user hands to ``canary simulate``; it must never run code. Only
numbers, the names given, arithmetic, comparisons, ``and``/``or``/``not``, ``x if c else y``
and ``min``/``max``/``abs`` are accepted, checked when the file is loaded.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

NAMES = ("t", "minutes", "weight", "step")
_FUNCS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}
_BIN: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMP: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class ExpressionError(ValueError):
    pass


@functools.lru_cache(maxsize=1024)
def compile_expression(text: str) -> ast.Expression:
    """Parse and check ``text``; raises ExpressionError naming what is not allowed.

    Cached: a scenario asks for the same few expressions at every evaluation.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{text!r} is not an expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in NAMES and node.id not in _FUNCS:
            raise ExpressionError(f"unknown name {node.id!r} in {text!r}; use {', '.join(NAMES)}")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords
        ):
            raise ExpressionError(f"only min(), max() and abs() may be called in {text!r}")
        allowed = (
            ast.Expression,
            ast.Constant,
            ast.Name,
            ast.Load,
            ast.BinOp,
            ast.UnaryOp,
            ast.BoolOp,
            ast.Compare,
            ast.IfExp,
            ast.Call,
            ast.And,
            ast.Or,
            ast.Not,
            ast.USub,
            ast.UAdd,
            *_BIN,
            *_CMP,
        )
        if not isinstance(node, allowed):
            raise ExpressionError(f"{type(node).__name__} is not allowed in {text!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise ExpressionError(f"only numbers may appear in {text!r}")
    return tree


def evaluate(tree: ast.Expression, names: Mapping[str, float]) -> float:
    def ev(node: ast.AST) -> Any:
        match node:
            case ast.Expression(body=body):
                return ev(body)
            case ast.Constant(value=value):
                return value
            case ast.Name(id=name):
                return names[name]
            case ast.BinOp(left=left, op=op, right=right):
                return _BIN[type(op)](ev(left), ev(right))
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -ev(operand)
            case ast.UnaryOp(op=ast.UAdd(), operand=operand):
                return +ev(operand)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                return not ev(operand)
            case ast.BoolOp(op=ast.And(), values=values):
                return all(ev(v) for v in values)
            case ast.BoolOp(op=ast.Or(), values=values):
                return any(ev(v) for v in values)
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                current = ev(left)
                for compare, right in zip(ops, comparators, strict=True):
                    value = ev(right)
                    if not _CMP[type(compare)](current, value):
                        return False
                    current = value
                return True
            case ast.IfExp(test=test, body=body, orelse=orelse):
                return ev(body) if ev(test) else ev(orelse)
            case ast.Call(func=ast.Name(id=name), args=args):
                return _FUNCS[name](*(ev(a) for a in args))
        raise ExpressionError(f"cannot evaluate {ast.dump(node)}")

    try:
        return float(ev(tree))
    except ZeroDivisionError:
        return float("nan")
