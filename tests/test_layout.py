"""The package layout by stage (CONTRIBUTING.md): no import circle, no import that runs back up,
no private name imported across modules, and one script per rule, named after it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "wildmerge"
#: Modules at the top of the package: shared by every stage, they import no stage.
BASE = {"wildmerge", "wildmerge.provenance", "wildmerge.failures", "wildmerge.geometry", "wildmerge.warm",
        "wildmerge.smk"}
#: Stages in pipeline order; a stage imports the base, itself and earlier stages only. The study
#: (DAG-time planning) comes after them: it plans every stage, and no stage imports it; the cost
#: plan (wildmerge.plan) prices the study's jobs, so it comes after the study.
STAGES = ["demo", "hub", "preflight", "merging", "evaluation", "aggregate", "study", "plan"]


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every wildmerge import in ``path``, also inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wildmerge"):
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("wildmerge")]
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for target, names, _ in _imports(path):
            # `from wildmerge.demo import tiny_models` imports a module; `from wildmerge.x import y` a name
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            graph[mod] |= set(subs) if subs else {target}
    return graph


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else None


def test_the_import_graph_has_no_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n in graph and not state.get(n):
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m)


def test_no_import_runs_back_up() -> None:
    bad = []
    for mod, targets in _graph().items():
        for t in targets:
            src, dst = _stage(mod), _stage(t)
            if mod in BASE and dst is not None:
                bad.append(f"{mod} (top) imports the stage module {t}")
            elif src and dst and STAGES.index(dst) > STAGES.index(src):
                bad.append(f"{mod} ({src}) imports {t} of the later stage {dst}")
    assert not bad, "\n".join(sorted(bad))


def test_no_private_name_is_imported_across_modules() -> None:
    bad = []
    for path in [*PKG.rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "rules").glob("*.smk")]:
        if path.suffix == ".smk":
            lines = re.findall(r"^\s*from (wildmerge[\w.]*) import (.+)$", path.read_text(), re.M)
            found = [(m, [n.strip() for n in names.split("#")[0].strip("() ").split(",")], 0) for m, names in lines]
        else:
            found = _imports(path)
        for module, names, line in found:
            bad += [f"{path.relative_to(REPO)}:{line}: {module}.{n}" for n in names if n.startswith("_")]
    assert not bad, "\n".join(bad)


def _rule_scripts() -> dict[str, str]:
    """rule -> its script, read from the rule files (snakefmt's layout: `rule x:` then `script:`)."""
    out: dict[str, str] = {}
    for smk in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]:
        rule = None
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(?:rule|checkpoint) (\w+):", line)
            if m:
                rule = m.group(1)
            assert not line.startswith("use rule"), f"{smk.name}: `{line}`: give the rule its own script"
            if line.strip() == "script:" and rule:
                out[rule] = Path(lines[i + 1].strip().strip('"')).name
    return out


def test_every_rule_runs_a_script_of_its_own_name() -> None:
    scripts = _rule_scripts()
    assert len(scripts) >= 18, scripts  # the parser found the rules
    wrong = {r: s for r, s in scripts.items() if s != f"{r}.py"}
    assert not wrong, f"rules whose script is not named after them: {wrong}"
    used = set(scripts.values())
    unused = sorted(p.name for p in (REPO / "scripts").glob("*.py") if p.name not in used)
    assert not unused, f"scripts no rule runs: {unused}"
