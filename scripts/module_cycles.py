#!/usr/bin/env python3
"""Finds import cycles between the modules of each Rust crate of the workspace, and of the
Python package.

The house rule (CONTRIBUTING.md): no two modules import each other, directly or through
others. A module is a file (``a/b.rs`` or ``a/b/mod.rs`` is ``a::b``; ``lib.rs`` and
``main.rs`` are the crate root). Module M depends on module N when M's code names a path
into N: ``crate::n::...``, ``super::n::...``, ``self::n::...``, a child module by its name
(``use n::X`` in N's parent), or an item the crate root re-exports from N
(``crate::X`` with ``pub use n::X`` in the root). Declaring a child (``mod n;``) is not a
dependency, nor is anything after ``#[cfg(test)]`` (unit tests sit at the end of a file and
use ``super::*``), nor comments and doc links.

Python: module M depends on module N when M imports it (``import p.n``, ``from p.n import X``,
``from p import n`` for a submodule n, or ``from p import X`` where the package ``p``
re-exports X from N), at any indentation (a function-level import is how a cycle is usually
hidden, and still is one). Not dependencies: imports under ``if TYPE_CHECKING:`` (annotations
only, the standard way to name a type without importing its module at run time) and text in
docstrings.

Usage: ``scripts/module_cycles.py`` checks every crate of the workspace and the package
``python/fraiseql_subscriptions``. Prints each cycle found and exits 1 when there is one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH = re.compile(rf"\b(crate|super|self)((?:::{IDENT})+)")
USE_CHILD = re.compile(rf"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+({IDENT})::")
REEXPORT = re.compile(r"^\s*pub\s+use\s+([^;]+);", re.MULTILINE)


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def code_of(text: str) -> str:
    """The file's code before its first ``#[cfg(test)]``, without comments."""
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("//"):
            continue
        lines.append(line.split(" //")[0])
    return "\n".join(lines)


def root_reexports(root_code: str) -> dict[str, tuple[str, ...]]:
    """``pub use a::b::{X, Y}`` in the crate root: X and Y come from module ``a::b``."""
    found: dict[str, tuple[str, ...]] = {}
    for match in REEXPORT.finditer(root_code):
        spec = " ".join(match.group(1).split())
        if "{" in spec:
            prefix, _, names = spec.partition("{")
            module = tuple(p for p in prefix.strip().rstrip(":").split("::") if p)
            for name in names.rstrip("}").split(","):
                name = name.strip().split(" as ")[-1].strip()
                if name and name != "self":
                    found[name] = module
        else:
            parts = spec.split(" as ")[0].split("::")
            found[spec.split(" as ")[-1].split("::")[-1]] = tuple(parts[:-1])
    return found


def longest_module(path: tuple[str, ...], modules: set[tuple[str, ...]]) -> tuple[str, ...]:
    for end in range(len(path), -1, -1):
        if path[:end] in modules:
            return path[:end]
    return ()


def graph(crate: Path) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    src = crate / "src"
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    modules = set(files)
    codes = {m: code_of(f.read_text()) for m, f in files.items()}
    reexports = root_reexports(codes.get((), ""))
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in modules}
    for module, code in codes.items():
        for match in PATH.finditer(code):
            anchor, rest = match.group(1), match.group(2).split("::")[1:]
            if anchor == "crate":
                base: tuple[str, ...] = ()
            elif anchor == "super":
                base = module[:-1]
                while rest and rest[0] == "super":
                    base, rest = base[:-1], rest[1:]
            else:
                base = module
            target = longest_module(base + tuple(rest), modules)
            if target == () and anchor == "crate" and rest and rest[0] in reexports:
                target = longest_module(reexports[rest[0]], modules)
            if target != module:
                edges[module].add(target)
        for line in code.splitlines():
            child = USE_CHILD.match(line)
            if child and (*module, child.group(1)) in modules:
                edges[module].add((*module, child.group(1)))
    for module in edges:
        edges[module].discard(module)
    return edges


def cycles(
    edges: dict[tuple[str, ...], set[tuple[str, ...]]],
) -> list[list[tuple[str, ...]]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[tuple[str, ...], int] = {}
    low: dict[tuple[str, ...], int] = {}
    stack: list[tuple[str, ...]] = []
    on_stack: set[tuple[str, ...]] = set()
    found: list[list[tuple[str, ...]]] = []

    def visit(node: tuple[str, ...]) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def workspace_crates() -> list[Path]:
    manifest = (ROOT / "Cargo.toml").read_text()
    block = re.search(r"members\s*=\s*\[([^\]]*)\]", manifest)
    members = re.findall(r'"([^"]+)"', block.group(1)) if block else []
    crates: list[Path] = []
    for member in members:
        crates.extend(sorted(p for p in ROOT.glob(member) if (p / "src").is_dir()))
    return crates


PY_FROM = re.compile(
    r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import[ \t]+(?:\(([^)]*)\)|([^\n#]*))",
    re.MULTILINE,
)
PY_IMPORT = re.compile(r"^\s*import\s+([\w.]+)", re.MULTILINE)


def imported(match: re.Match[str]) -> list[str]:
    """The names of a ``from ... import`` match, comments dropped."""
    text = match.group(2) if match.group(2) is not None else match.group(3)
    names: list[str] = []
    for line in text.splitlines():
        names.extend(line.split("#")[0].split(","))
    return [n.strip() for n in names if n.strip()]


def python_code(text: str) -> str:
    """The module's code without docstrings and ``if TYPE_CHECKING:`` blocks."""
    text = re.sub(r'""".*?"""|\'\'\'.*?\'\'\'', "", text, flags=re.DOTALL)
    kept: list[str] = []
    skipping_from: int | None = None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if skipping_from is not None:
            if not line.strip() or indent > skipping_from:
                continue
            skipping_from = None
        if line.strip() in ("if TYPE_CHECKING:", "if typing.TYPE_CHECKING:"):
            skipping_from = indent
            continue
        kept.append(line)
    return "\n".join(kept)


def python_graph(package: Path) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    """The import graph of a Python package (absolute imports of its own modules)."""
    top = package.name
    files: dict[tuple[str, ...], Path] = {}
    for file in package.rglob("*.py"):
        parts = (top, *file.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[parts] = file
    for file in package.rglob("*.pyi"):
        parts = (top, *file.relative_to(package).with_suffix("").parts)
        files.setdefault(parts, file)
    modules = set(files)
    texts = {m: python_code(f.read_text()) for m, f in files.items()}

    def origin(
        package_module: tuple[str, ...],
        item: str,
        seen: frozenset[tuple[str, ...]] = frozenset(),
    ) -> tuple[str, ...]:
        """The module that defines `item` imported from `package_module` (following
        re-exports; a loop of re-exports ends at the module it started from)."""
        if (*package_module, item) in modules:
            return (*package_module, item)
        for match in PY_FROM.finditer(texts.get(package_module, "")):
            names = [n.strip().split(" as ")[-1].strip() for n in imported(match)]
            source = tuple(match.group(1).split("."))
            if item in names and source[0] == top and source in modules:
                if source == package_module or source in seen:
                    return package_module
                return origin(source, item, seen | {package_module})
        return package_module

    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in modules}
    for module, text in texts.items():
        for match in PY_IMPORT.finditer(text):
            target = longest_module(tuple(match.group(1).split(".")), modules)
            if target:
                edges[module].add(target)
        for match in PY_FROM.finditer(text):
            source = tuple(match.group(1).split("."))
            if source[0] != top or source not in modules:
                continue
            for item in imported(match):
                item = item.strip().split(" as ")[0].strip()
                if item:
                    edges[module].add(origin(source, item))
        edges[module].discard(module)
    return edges


def name(module: tuple[str, ...]) -> str:
    return "::".join(module) or "(crate root)"


def main(argv: list[str]) -> int:
    crates = [Path(a).resolve() for a in argv] or workspace_crates()
    graphs = [(crate, graph(crate)) for crate in crates]
    if not argv:
        package = ROOT / "python" / "fraiseql_subscriptions"
        graphs.append((package, python_graph(package)))
    failed = False
    for crate, edges in graphs:
        for component in cycles(edges):
            failed = True
            members = set(component)
            print(f"{crate.relative_to(ROOT)}: modules importing each other:")
            for module in component:
                into = sorted(name(t) for t in edges[module] if t in members)
                print(f"  {name(module)} -> {', '.join(into)}")
    if not failed:
        print(f"no module cycles in {len(graphs)} crates and packages")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
