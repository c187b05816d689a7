"""The code stays a house a newcomer reads in an hour (docs/architecture.md#the-rooms): small
files, functions and classes in the library; one reader of the environment (``settings.py``);
one name per room (no domain module named like a command or a Lambda's module); and a
development kit, scripts and benchmarks that stand on their own (no ``sys.path`` edits, no
import of ``tests``); and a design that lives in the repository (docs/architecture.md, linked
from the README and the development page, and no citation of a design file outside it).

Every check of code reads the source with ``ast``, never runs it, and every check reports each
offender as ``file:line`` so a failure says where to look. The checks take a root folder, so
the last tests run each one on a small tree of deliberately bad files: each can fail.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit import REPO

#: The library: the package that is also the Lambda layer, and the handlers.
LIBRARY = ("layers/schwab_tokens/schwab_tokens", "functions")
PACKAGE = "layers/schwab_tokens/schwab_tokens"
#: What the make targets run and the tests share: none may lean on tests/ or on sys.path.
STANDALONE = ("scripts", "benchmarks", "devkit")
#: The one module of the library that reads the environment.
ENVIRONMENT_READER = f"{PACKAGE}/settings.py"

#: The design map that was kept outside the repository (spelled apart, so that this file
#: does not cite it): docs/architecture.md holds the design.
DESIGN_MAP = "DESIGN" + ".md"
#: Folders of the checkout that are not the project's own text.
_NOT_OURS = frozenset({".git", ".venv", ".tools", ".aws-sam", ".mypy_cache", ".ruff_cache"})
_SOURCE_SUFFIXES = frozenset({".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".mk", ".json", ".in"})

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 250

#: What reads (or edits) the process's environment in ``os``.
_ENVIRONMENT = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})
#: The ``sys.path`` methods that edit it.
_PATH_EDITS = frozenset({"insert", "append", "extend", "remove", "pop", "clear", "__setitem__"})


def python_files(root: Path, folders: tuple[str, ...]) -> Iterator[Path]:
    """Every ``.py`` file under ``folders`` of ``root``, in a stable order."""
    for folder in folders:
        yield from sorted((root / folder).rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    """The module's syntax tree (``SyntaxError`` names the file)."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def where(root: Path, path: Path, line: int) -> str:
    """``file:line``, the file relative to ``root``."""
    return f"{path.relative_to(root).as_posix()}:{line}"


def oversized(root: Path, folders: tuple[str, ...] = LIBRARY) -> list[str]:
    """Every file, function (methods and nested functions included) and class over its limit."""
    found = []
    for path in python_files(root, folders):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_FILE_LINES:
            found.append(f"{where(root, path, 1)}: file of {lines} lines (> {MAX_FILE_LINES})")
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                kind, limit = "function", MAX_FUNCTION_LINES
            elif isinstance(node, ast.ClassDef):
                kind, limit = "class", MAX_CLASS_LINES
            else:
                continue
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > limit:
                found.append(
                    f"{where(root, path, node.lineno)}: {kind} {node.name} of {size} lines "
                    f"(> {limit})"
                )
    return found


def environment_readers(root: Path, folders: tuple[str, ...] = LIBRARY) -> list[str]:
    """Every use of ``os.environ``, ``os.getenv`` and friends outside ``settings.py``, however
    ``os`` or the name was imported (``import os as o``, ``from os import environ``)."""
    found = []
    for path in python_files(root, folders):
        if path == root / ENVIRONMENT_READER:
            continue
        tree = parsed(path)
        os_names = {"os"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                os_names |= {a.asname or a.name for a in node.names if a.name == "os"}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                names = [a.name for a in node.names if a.name in _ENVIRONMENT]
                if names:
                    found.append(f"{where(root, path, node.lineno)}: from os import {names[0]}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr in _ENVIRONMENT
                and isinstance(node.value, ast.Name)
                and node.value.id in os_names
            ):
                found.append(f"{where(root, path, node.lineno)}: {node.value.id}.{node.attr}")
    return found


def shared_names(root: Path) -> list[str]:
    """Every module or package at the top of the package named like a module under
    ``commands/`` or ``lambdas/`` (``doctor.py`` beside ``commands/doctor.py``)."""
    package = root / PACKAGE
    top = {
        path.stem if path.is_file() else path.name: path
        for path in sorted(package.iterdir())
        if (path.suffix == ".py" or (path / "__init__.py").is_file())
        and path.name not in ("__init__.py", "__main__.py", "commands", "lambdas")
    }
    found = []
    for room in ("commands", "lambdas"):
        for module in sorted((package / room).glob("*.py")):
            if module.stem in top:
                found.append(
                    f"{top[module.stem].relative_to(root).as_posix()} shares its name with "
                    f"{module.relative_to(root).as_posix()}"
                )
    return found


def reaches_outside(root: Path, folders: tuple[str, ...] = STANDALONE) -> list[str]:
    """Every import of ``tests`` and every edit of ``sys.path`` (a method call, an assignment
    to it or to an item of it, ``+=``) under ``folders``, each file's in line order."""
    found = []
    for path in python_files(root, folders):
        for line, what in sorted(_reaching_outside(parsed(path))):
            found.append(f"{where(root, path, line)}: {what}")
    return found


def _reaching_outside(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_tests(alias.name):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_tests(node.module):
            yield node.lineno, f"from {node.module} import ..."
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _PATH_EDITS
            and _is_sys_path(node.func.value)
        ):
            yield node.lineno, f"sys.path.{node.func.attr}(...)"
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                edited = target.value if isinstance(target, ast.Subscript) else target
                if _is_sys_path(edited):
                    yield node.lineno, "sys.path assigned"


def unlinked_architecture(root: Path) -> list[str]:
    """docs/architecture.md's absence, and each of README.md and docs/development.md that does
    not link it (tests/docs checks the page's own links with every page's)."""
    if not (root / "docs/architecture.md").is_file():
        return ["docs/architecture.md: missing"]
    found = []
    for page, link in (
        ("README.md", "docs/architecture.md"),
        ("docs/development.md", "architecture.md"),
    ):
        path = root / page
        if not path.is_file() or f"]({link})" not in path.read_text(encoding="utf-8"):
            found.append(f"{page}: no link [Architecture]({link})")
    return found


def outside_citations(root: Path) -> list[str]:
    """Every line of the repository's code, docs and build files that names the design map
    kept outside the repository (``DESIGN_MAP``): docs/architecture.md holds the design."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in _NOT_OURS)
        for file in sorted(files):
            path = Path(folder, file)
            if not _is_source(path):
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, start=1):
                if DESIGN_MAP in line:
                    found.append(f"{where(root, path, number)}: {line.strip()[:80]}")
    return found


def _is_source(path: Path) -> bool:
    return path.suffix in _SOURCE_SUFFIXES or path.name == "Makefile"


def _is_tests(module: str | None) -> bool:
    return module is not None and (module == "tests" or module.startswith("tests."))


def _is_sys_path(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def _fail_on(found: list[str], what: str) -> None:
    if found:
        message = f"{len(found)} {what} (docs/architecture.md#the-rooms):\n  " + "\n  ".join(found)
        pytest.fail(message, pytrace=False)


# -- the tree holds to it ------------------------------------------------------------------------
def test_no_file_function_or_class_in_the_library_is_over_its_limit() -> None:
    _fail_on(
        oversized(REPO),
        f"over the limits (files {MAX_FILE_LINES} lines, functions {MAX_FUNCTION_LINES}, "
        f"classes {MAX_CLASS_LINES}): split them into named steps",
    )


def test_only_settings_reads_the_environment() -> None:
    _fail_on(
        environment_readers(REPO),
        f"reads of the environment outside {ENVIRONMENT_READER}: read it through Settings",
    )


def test_no_domain_module_shares_its_name_with_a_command_or_a_lambda() -> None:
    _fail_on(shared_names(REPO), "names used twice: rename the domain module")


def test_scripts_benchmarks_and_devkit_stand_on_their_own() -> None:
    _fail_on(
        reaches_outside(REPO), "imports of tests or sys.path edits: put what they share in devkit/"
    )


def test_the_architecture_page_is_linked_from_the_readme_and_the_development_page() -> None:
    _fail_on(unlinked_architecture(REPO), "missing links to docs/architecture.md")


def test_nothing_cites_a_design_file_outside_the_repository() -> None:
    _fail_on(
        outside_citations(REPO), "citations of a file the repository does not hold: cite docs/"
    )


# -- each check can fail -------------------------------------------------------------------------
@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    """A tree with one offender of each kind, and a settings.py that may read the environment."""
    package = tmp_path / PACKAGE
    for folder in (package / "commands", package / "lambdas", tmp_path / "functions"):
        folder.mkdir(parents=True)
    for folder in STANDALONE:
        (tmp_path / folder).mkdir()
    long_body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (package / "long.py").write_text(f"def long():\n{long_body}")
    (package / "big.py").write_text("X = 1\n" * (MAX_FILE_LINES + 1))
    methods = "".join(f"    def m{i}(self):\n        return {i}\n" for i in range(130))
    (tmp_path / "functions" / "app.py").write_text(f"class Big:\n{methods}")
    (package / "settings.py").write_text("import os\nA = os.environ.get('A')\n")
    (package / "aws.py").write_text("import os as o\nR = o.getenv('AWS_REGION')\n")
    (package / "tickets.py").write_text("from os import environ\n")
    (package / "status.py").write_text("")
    (package / "commands" / "status.py").write_text("")
    (package / "login").mkdir()
    (package / "login" / "__init__.py").write_text("")
    (package / "lambdas" / "login.py").write_text("")
    (tmp_path / "scripts" / "demo.py").write_text(
        "import sys\nsys.path.insert(0, 'tests')\nfrom tests.helpers import x\n"
    )
    (tmp_path / "benchmarks" / "run.py").write_text("import sys\nsys.path += ['.']\n")
    (tmp_path / "devkit" / "user.py").write_text("import tests.fakes\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "architecture.md").write_text("# Architecture\n")
    (tmp_path / "docs" / "development.md").write_text("See [Architecture](architecture.md).\n")
    (tmp_path / "README.md").write_text(f"See the design ({DESIGN_MAP}, 'The rooms').\n")
    return tmp_path


def test_the_size_check_names_each_offender(bad_tree: Path) -> None:
    found = oversized(bad_tree)
    assert [line.split(":")[0:2] for line in found] == [
        [f"{PACKAGE}/big.py", "1"],
        [f"{PACKAGE}/long.py", "1"],
        ["functions/app.py", "1"],
    ]
    assert "function long of 61 lines" in found[1]
    assert "class Big of 261 lines" in found[2]


def test_the_environment_check_spares_settings_only(bad_tree: Path) -> None:
    assert environment_readers(bad_tree) == [
        f"{PACKAGE}/aws.py:2: o.getenv",
        f"{PACKAGE}/tickets.py:1: from os import environ",
    ]


def test_the_name_check_sees_modules_and_packages(bad_tree: Path) -> None:
    assert shared_names(bad_tree) == [
        f"{PACKAGE}/status.py shares its name with {PACKAGE}/commands/status.py",
        f"{PACKAGE}/login shares its name with {PACKAGE}/lambdas/login.py",
    ]


def test_the_standalone_check_sees_imports_and_path_edits(bad_tree: Path) -> None:
    assert reaches_outside(bad_tree) == [
        "scripts/demo.py:2: sys.path.insert(...)",
        "scripts/demo.py:3: from tests.helpers import ...",
        "benchmarks/run.py:2: sys.path assigned",
        "devkit/user.py:1: import tests.fakes",
    ]


def test_the_link_check_sees_a_page_without_the_link(bad_tree: Path) -> None:
    assert unlinked_architecture(bad_tree) == [
        "README.md: no link [Architecture](docs/architecture.md)"
    ]
    (bad_tree / "docs" / "architecture.md").unlink()
    assert unlinked_architecture(bad_tree) == ["docs/architecture.md: missing"]


def test_the_citation_check_sees_the_outside_design_map(bad_tree: Path) -> None:
    assert outside_citations(bad_tree) == [
        f"README.md:1: See the design ({DESIGN_MAP}, 'The rooms')."
    ]
