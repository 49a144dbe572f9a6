"""The house: reft_mini/ is the method alone, its modules import each other without a cycle and never a
script or a tool, and no file outside tests/ points at folders outside the repository."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "reft_mini"
SCRIPTS = {"train_warmup", "train_ppo", "evaluate"}
TOOLS = {"synthetic", "pretrain", "train_bpe", "bench", "exercises"}


def package_imports() -> dict[str, set[str]]:
    """module name -> the other project modules it imports (top level or inside functions)."""
    graph = {}
    for file in sorted(PACKAGE.glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "reft_mini":
                    deps |= {a.name for a in node.names}
                elif node.module.startswith("reft_mini."):
                    deps.add(node.module.split(".")[1])
                else:
                    deps.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                for a in node.names:
                    deps.add(a.name.split(".")[1] if a.name.startswith("reft_mini.") else a.name.split(".")[0])
        graph[file.stem] = deps
    return graph


def test_package_modules_import_each_other_without_a_cycle():
    graph = package_imports()
    own = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        path.append(m)
        for d in sorted(own[m]):
            visit(d)
        path.pop()
        done.add(m)

    for m in sorted(own):
        visit(m)


def test_package_never_imports_a_script_or_a_tool():
    for module, deps in package_imports().items():
        assert not deps & (SCRIPTS | TOOLS), f"reft_mini/{module}.py imports {sorted(deps & (SCRIPTS | TOOLS))}"


def test_the_package_holds_only_the_method():
    # The generator, the base model's pretraining, the tokenizer trainer, the benchmark and the exercise
    # tool live beside what they produce (data/) or with the tools (tools/), not in the package.
    assert not {f.stem for f in PACKAGE.glob("*.py")} & TOOLS
    for tool in ("data/synthetic/synthetic.py", "data/base/pretrain.py", "data/tokenizer/train_bpe.py",
                 "tools/bench.py", "tools/exercises.py"):
        assert (REPO / tool).is_file(), tool


def test_no_file_outside_tests_points_outside_the_repository_or_at_issues():
    files = [REPO / "README.md", *REPO.glob("*.py"), *PACKAGE.glob("*.py"), *(REPO / "tools").glob("*.py"),
             *(REPO / "data").rglob("*.py"), *(REPO / "data").rglob("*.md"), *(REPO / ".ci").glob("*")]
    for f in files:
        text = f.read_text()
        assert "shared/datasets" not in text and "../shared" not in text, f"{f} names a folder outside the repository"
        assert not re.search(r"\bissues?\b", text, re.I), f"{f} mentions issues"


def test_readme_file_map_and_line_count_agree_with_the_package():
    readme = (REPO / "README.md").read_text()
    modules = sorted(f for f in PACKAGE.glob("*.py") if f.name != "__init__.py")
    m = re.search(r"`reft_mini/` is the method alone: (\d+) modules, about ([\d,]+) lines", readme)
    assert m, "README's Files section states the package's size"
    assert int(m.group(1)) == len(modules)
    lines = sum(len(f.read_text().splitlines()) for f in PACKAGE.glob("*.py"))
    assert abs(int(m.group(2).replace(",", "")) - lines) <= 0.1 * lines, f"README says {m.group(2)}, the tree has {lines}"
    files = readme[readme.index("## Files"):]
    files = files[:files.index("\n## ", 5)]
    for f in modules:   # every module is in the file map (named alone or in a row's list)
        assert f"reft_mini/{f.name}`" in files or f"`{f.name}`" in files, f"README's file map misses {f.name}"
    for named in re.findall(r"`((?:reft_mini|tools|data)/[\w/.]+)`", files):
        assert (REPO / named).exists(), f"README's file map names {named}, which does not exist"
