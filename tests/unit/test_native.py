"""Which build of the per-call path runs (src/mcpmux/native.py).

scripts/test.sh runs the suite twice: the unit tests on the pure-Python sources
(``MCPMUX_EXPECT_COMPILED=0``), then everything on the compiled copy that
scripts/setup.sh built (``=1``). These fail if a run is not the build it claims, for
example if the compile fell back to pure Python without anyone noticing."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from mcpmux import native


def test_describe_matches_what_was_imported() -> None:
    done = native.compiled()
    assert set(done) <= set(native.MODULES)
    if not done:
        assert native.describe() == "pure Python"
    elif len(done) == len(native.MODULES):
        assert native.describe().startswith(f"compiled ({len(native.MODULES)} modules")
    else:
        assert "partly" in native.describe()


@pytest.mark.skipif("MCPMUX_EXPECT_COMPILED" not in os.environ, reason="no build expected")
def test_the_build_this_run_expects() -> None:
    expected = list(native.MODULES) if os.environ["MCPMUX_EXPECT_COMPILED"] == "1" else []
    assert native.compiled() == expected


# -- what compiled code must not do (docs/architecture.md, "Compiled modules") -----------
# mypyc 2.4 mishandles an exception thrown into a coroutine (a task's cancellation) that
# another compiled coroutine awaits, when the code that handles it suspends first: an
# ``await`` in a ``finally`` (or in the exit of an ``async with``) swallows the
# CancelledError, and a bare ``raise`` after an ``await`` in an ``except`` re-raises a
# freed exception (a crash, or a garbled one). ``except BaseException as exc: ...;
# raise exc`` is handled right. The source is the same for both builds, so these rules
# are checked on the source, in every run.
def _suspends(node: ast.AST) -> bool:
    return any(isinstance(n, (ast.Await, ast.AsyncWith, ast.AsyncFor)) for n in ast.walk(node))


def _problems(source: str) -> list[tuple[int, str]]:
    found = []
    tree = ast.parse(source)
    lines = source.splitlines()
    # A module-level name is looked up in the module's dict on every use, unless it is
    # Final (then a literal is inlined and any other value kept in a C variable).
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None)
        if (isinstance(target, ast.Name) and re.fullmatch(r"_?[A-Z][A-Z0-9_]*", target.id)
                and not (isinstance(node, ast.AnnAssign) and "Final" in ast.unparse(node.annotation))
                and "# not Final" not in lines[node.lineno - 1]):
            found.append((node.lineno, f"constant {target.id} without Final"))
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Tuple)
              and ast.unparse(node.annotation) == "Final"):
            # Typed as a fixed-length tuple it is kept unboxed, and built again as a
            # Python tuple on every ``in`` or index: ``Final[tuple[str, ...]]`` is not.
            found.append((node.lineno, f"fixed-length Final tuple {ast.unparse(node.target)}"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
                and len(node.args) == 2 and isinstance(node.args[1], ast.BinOp)):
            # ``A | B`` is built on every call and checked generically; a tuple of
            # built-in types compiles to direct type checks.
            found.append((node.lineno, f"isinstance with {ast.unparse(node.args[1])}"))
        if isinstance(node, ast.Try | ast.TryStar) and any(_suspends(s) for s in node.finalbody):
            found.append((node.finalbody[0].lineno, "await in a finally"))
        elif isinstance(node, ast.AsyncWith):
            # An asyncio.Lock's exit never suspends; any other context manager's may.
            names = [ast.unparse(item.context_expr) for item in node.items]
            if not all(name.lower().endswith("lock") for name in names):
                found.append((node.lineno, f"async with {', '.join(names)}"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # mypyc types a name by its first binding: ``except A as e`` then ``except B
            # as e`` checks a B against A at run time (a TypeError instead of the handler).
            bound: dict[str, str] = {}
            for n in ast.walk(node):
                if isinstance(n, ast.ExceptHandler) and n.name and n.type is not None:
                    kind = ast.unparse(n.type)
                    if bound.setdefault(n.name, kind) != kind:
                        found.append((n.lineno, f"'{n.name}' bound to {bound[n.name]} and {kind}"))
        elif isinstance(node, ast.ExceptHandler):
            awaited = False
            for stmt in node.body:
                for n in ast.walk(stmt):
                    awaited = awaited or isinstance(n, ast.Await)
                    if isinstance(n, ast.Raise) and n.exc is None and awaited:
                        found.append((n.lineno, "bare raise after an await"))
    return found


@pytest.mark.parametrize("module", native.MODULES)
def test_compiled_modules_avoid_what_mypyc_gets_wrong(module: str) -> None:
    base = Path(native.__file__).parent.parent.joinpath(*module.split("."))
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    assert _problems(path.read_text()) == []


@pytest.mark.parametrize("snippet, problem", [
    ("async def f():\n try:\n  await g()\n finally:\n  await h()\n", "await in a finally"),
    ("async def f():\n try:\n  await g()\n except E:\n  await h()\n  raise\n", "bare raise after an await"),
    ("async def f():\n async with session.get(u) as r:\n  pass\n", "async with session.get(u)"),
    ("def f():\n try:\n  g()\n except A as e:\n  h(e)\n except B as e:\n  h(e)\n", "'e' bound to A and B"),
    ("LIMIT = 5\n", "constant LIMIT without Final"),
    ("_TABLE: dict[str, int] = {}\n", "constant _TABLE without Final"),
    ("NAMES: Final = ('a', 'b')\n", "fixed-length Final tuple NAMES"),
    ("def f(x):\n return isinstance(x, str | int)\n", "isinstance with str | int"),
])
def test_the_check_finds_each_pattern(snippet: str, problem: str) -> None:
    assert [p for _, p in _problems(snippet)] == [problem]


def test_the_check_passes_the_safe_forms() -> None:
    safe = (
        "async def f():\n try:\n  await g()\n except BaseException as exc:\n  await h()\n  raise exc\n"
        "async def k():\n try:\n  await g()\n except E:\n  log()\n  raise\n"
        "async def m():\n try:\n  await g()\n finally:\n  r.release()\n"
        "async def n():\n async with self._lock:\n  await g()\n"
        "def p():\n try:\n  g()\n except A as a:\n  h(a)\n except B as b:\n  h(b)\n"
        "LIMIT: Final = 5\n_TABLE: Final[dict[str, int]] = {}\nDELAY = 0.1  # not Final: a test changes it\n"
        "NAMES: Final[tuple[str, ...]] = ('a', 'b')\ndef q(x):\n return isinstance(x, (str, int))\n"
        "log = logging.getLogger(__name__)\nSend = Callable[[int], None]\n"
    )
    assert _problems(safe) == []
