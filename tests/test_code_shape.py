"""The code stays in pieces that fit in a head: module and function length limits.

No module in ``src/edgewise`` over :data:`MAX_MODULE_LINES` lines and no function over
:data:`MAX_FUNCTION_LINES`, except where the module's or function's docstring says why
(a line starting with ``Long because``).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "edgewise"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100
EXCUSE = "Long because"


def _excused(node: ast.AST) -> bool:
    if not isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    return EXCUSE in (ast.get_docstring(node) or "")


def _long_functions(source: str, name: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            if n > MAX_FUNCTION_LINES and not _excused(node):
                out.append(f"{name}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_module_over_the_limit() -> None:
    long = []
    for path in sorted(SRC.rglob("*.py")):
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES and not _excused(ast.parse(path.read_text())):
            long.append(f"{path.relative_to(SRC)} ({n} lines)")
    assert not long, "modules over the limit: " + ", ".join(long)


def test_no_function_over_the_limit() -> None:
    long = [
        f
        for path in sorted(SRC.rglob("*.py"))
        for f in _long_functions(path.read_text(), str(path.relative_to(SRC)))
    ]
    assert not long, "functions over the limit: " + ", ".join(long)


def test_the_check_finds_a_long_function_and_honours_the_excuse() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert _long_functions(f"def f():\n    pass\n{body}\n", "m.py") == ["m.py:1 f (102 lines)"]
    excused = f'def f():\n    """{EXCUSE} it is a table."""\n{body}\n'
    assert _long_functions(excused, "m.py") == []
    assert _long_functions("def f():\n    pass\n", "m.py") == []
