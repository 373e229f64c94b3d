"""The package reads as the DAG (issue 14): stages behind one interface, a library below them
with no upward import and no import cycle, small modules and functions, results/ paths spelled
once, and no codec/detector kind tested by name outside its own class."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"
PKG = SRC / "rdflow"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
STAGE_NAMES = ["download", "decode", "train", "compress", "video_codecs", "detection", "vmaf",
               "pairs", "complexity", "aggregate", "export", "bd_rate", "ablation", "report"]


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_lazy_table(node: ast.AST) -> bool:
    """A call of rdflow.lazy.lazy_exports: its table's keys are imports (made on first use)."""
    if not (isinstance(node, ast.Call) and len(node.args) == 3 and isinstance(node.args[2], ast.Dict)):
        return False
    f = node.func
    return (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) == "lazy_exports"


def _relative_import(spec: str) -> ast.ImportFrom:
    name = spec.lstrip(".")
    return ast.ImportFrom(module=name or None, names=[], level=len(spec) - len(name))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """rdflow modules ``module`` imports anywhere (function-level imports too)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_pkg, node)
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        elif _is_lazy_table(node):  # rdflow.lazy.lazy_exports(__name__, globals(), {".jobs": ...})
            names = [_resolve(module, is_pkg, _relative_import(k.value)) for k in node.args[2].keys]
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n and n != module and n.startswith("rdflow"):
                out.add(n)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g = {m: imports_of(m, p, known) for m, p in mods.items()}
    for m in g:  # importing a submodule runs its package's __init__: not an edge to count
        g[m] = {d for d in g[m] if not m.startswith(d + ".")}
    return g


def test_no_import_cycle():
    g = graph()
    # a package importing its own submodules (to register them) is the package's own business
    edges = {m: {d for d in ds if not d.startswith(m + ".")} for m, ds in g.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_library_never_imports_a_stage_or_the_study():
    for m, deps in graph().items():
        if m.startswith(("rdflow.stages", "rdflow.study")):
            continue
        upward = sorted(d for d in deps if d.startswith(("rdflow.stages", "rdflow.study")))
        assert not upward, f"{m} (library) imports {upward}"


def test_only_the_study_imports_every_stage_and_stages_are_listed():
    from rdflow.stages import STAGES

    names = [s.__name__.rsplit(".", 1)[1] for s in STAGES]
    assert names == STAGE_NAMES
    for stage in STAGES:
        for attr in ("SECTION", "check", "targets"):
            assert hasattr(stage, attr), f"{stage.__name__} lacks {attr}"
    rules = {p.stem for p in (REPO / "workflow/rules").glob("*.smk")} - {"common"}
    assert rules <= set(STAGE_NAMES), rules - set(STAGE_NAMES)  # one name per concept


def test_module_sizes():
    big = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_function_sizes():
    long = []
    for m, p in modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_semicolon_imports_or_import_noqa_tricks():
    bad = []
    for m, p in modules().items():
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if re.match(r"\s*(from \S+ )?import .*;", line) or re.search(r"noqa:.*E70[12]", line):
                bad.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    assert not bad, bad


def _string_literals(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            yield node.lineno, text


def test_results_paths_are_spelled_once_in_paths():
    """Only rdflow.paths spells results/ and resources/ locations (docstrings aside)."""
    bad = []
    for m, p in modules().items():
        if m == "rdflow.paths":
            continue
        docs = {n.body[0].value.lineno for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for line, text in _string_literals(p):
            if line in docs:
                continue
            if re.search(r"(^|[\s\"'(])(results|resources)/", text):
                bad.append(f"{p.relative_to(REPO)}:{line}: {text[:80]!r}")
    assert not bad, "path literals outside rdflow.paths:\n" + "\n".join(bad)


def test_no_kind_tests_by_name_outside_the_class():
    """`kind == "learned"`-style branches are the registries' job."""
    pat = re.compile(r"""(kind|backend)["')\]]*\s*[!=]=\s*["'](learned|ssf2020|x264|x265|yolo|hog|fastestdet|jpeg|webp)["']""")
    bad = []
    for m, p in modules().items():
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if pat.search(line):
                bad.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    for p in (REPO / "workflow/rules").glob("*.smk"):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if pat.search(line):
                bad.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    assert not bad, bad


def _run_blocks(text: str):
    """(line, source) of every ``run:`` block of a rule file, dedented."""
    import textwrap

    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)run:\s*$", line)
        if not m:
            continue
        ind, body = len(m.group(1)), []
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= ind:
                break
            body.append(nxt)
        yield i + 1, textwrap.dedent("\n".join(body))


def test_run_blocks_are_one_call_each():
    """A rule's run: block is imports and one call (into its stage module), nothing else."""
    bad = []
    for p in sorted((REPO / "workflow/rules").glob("*.smk")) + [REPO / "Snakefile"]:
        for line, src in _run_blocks(p.read_text()):
            stmts = [s for s in ast.parse(src).body if not isinstance(s, (ast.Import, ast.ImportFrom))]
            if len(stmts) != 1 or not (isinstance(stmts[0], ast.Expr) and isinstance(stmts[0].value, ast.Call)):
                bad.append(f"{p.relative_to(REPO)}:{line}")
    assert not bad, f"run: blocks that are more than one call: {bad}"
