"""The conventions README.md and docs/*.md follow, as checks a test runs on any tree of docs.

Every check returns a list of ``Problem`` (``path:line: what: why``), empty when the docs hold:

- ``check_structure``: fences closed; shell commands only in ```sh / bash / console / shell
  blocks (a ``$ `` prompt, or a ``schwab-tokens`` or ``make`` line, in an untagged or text block
  is a command this test could not check); the consumer marker only right above a ```python
  block.
- ``check_links``: relative links (``[x](docs/deploy.md)``, ``[x](deploy.md#section)``,
  ``[x](#section)``) name existing files, and their ``#anchor`` a heading of that file
  (GitHub's slug). External links are not fetched.
- ``check_commands``: every ``schwab-tokens`` command in a shell block (a leading ``$ ``
  stripped, ``\\`` continuations joined, a trailing `` # comment`` dropped, leading ``VAR=value``
  allowed, pipelines, ``&&``, ``;`` and ``$(...)`` split as the shell does) and every inline
  code span starting ``schwab-tokens `` parses with the real ``schwab_tokens.commands.parser()``;
  every ``make`` target named in code is defined by the Makefile (or a file it includes).
  Placeholders (``<StoreUrl>``, ``"$STORE"``) are values. Inline spans may use synopsis
  brackets (``[--valid 24h]``) and ``...``; shell blocks must run as written.
- ``check_tables``: docs/deploy.md has a ``| parameter |`` table with exactly the template's
  parameters and a ``| output |`` table with exactly its outputs (first cell: names in
  backticks).
- ``check_mentions``: ``` `Name=Value` ``` spans, ``sam deploy --parameter-overrides Name=Value``,
  "the `Name` parameter" name template parameters (and allowed values); "the `Name` output" and
  "stack output `Name`" name template outputs.
- ``check_python``: every ```python block compiles (line numbers are the doc's).
- ``consumer_blocks``: the ```python blocks marked ``<!-- docs-test: consumer -->`` on the line
  above their fence, which ``tests/docs/consumer.py`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import re
import shlex
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHELL_LANGS = frozenset({"sh", "bash", "console", "shell", "shell-session", "zsh"})
TEXT_LANGS = frozenset({"", "text", "txt", "plain", "plaintext"})
PYTHON_LANGS = frozenset({"python", "py", "python3"})
CONSUMER_MARKER = "<!-- docs-test: consumer -->"

#: Words that may stand before a command in a shell line (keywords, wrappers).
_PREFIX_WORDS = frozenset(
    {"if", "then", "else", "elif", "while", "until", "do", "!", "{", "(", "time", "nohup", "exec"}
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_CAMEL = r"[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*"
_PLACEHOLDER = re.compile(r"^(<[^<>]+>|.*\$.*|SUBST|\.\.\.|…)$")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    what: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}: {self.why}"


def report(problems: Sequence[Problem]) -> str:
    """The failure message of a check: one problem per line."""
    ordered = sorted(problems, key=lambda p: (p.path, p.line))
    return f"{len(problems)} problem(s) in the docs:\n" + "\n".join(map(str, ordered))


# -- reading a markdown file ----------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """A fenced block: ``line`` is its opening fence's line, ``lines`` its content, dedented by
    the fence's indentation."""

    path: str
    lang: str
    line: int
    lines: tuple[str, ...]
    consumer: bool = False

    @property
    def first_line(self) -> int:
        return self.line + 1

    def source(self) -> str:
        """The content, preceded by blank lines so that line numbers are the doc's."""
        return "\n" * self.line + "\n".join(self.lines) + "\n"

    def numbered(self) -> Iterator[tuple[int, str]]:
        return enumerate(self.lines, self.first_line)


@dataclass(frozen=True)
class Span:
    """An inline code span (its text, with line breaks as spaces) and the line it starts on."""

    path: str
    line: int
    text: str


@dataclass(frozen=True)
class Row:
    line: int
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    line: int
    header: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass
class Doc:
    path: Path
    name: str
    lines: list[str]
    blocks: list[Block] = field(default_factory=list)
    #: The text with every fenced block's lines blanked (line numbers kept).
    prose: str = ""
    #: ``prose`` with code spans blanked too: where links and words are looked for.
    words: str = ""
    spans: list[Span] = field(default_factory=list)
    anchors: dict[str, int] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, offset: int) -> int:
        return self.prose.count("\n", 0, offset) + 1


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)")
_ATX = re.compile(r"^ {0,3}#{1,6}[ \t]+(?P<text>.*?)(?:[ \t]+#+)?[ \t]*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)=\"([^\"]+)\"", re.I)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation other than ``-``
    and ``_`` dropped, each space a hyphen."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def parse_doc(path: Path, root: Path) -> Doc:
    try:
        name = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        name = str(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = Doc(path=path, name=name, lines=lines)
    prose = list(lines)
    fence: re.Match[str] | None = None
    start, content = 0, list[str]()
    for index, line in enumerate(lines):
        number = index + 1
        if fence is None:
            opened = _FENCE.match(line)
            if opened:
                fence, start, content = opened, number, []
                prose[index] = ""
            continue
        prose[index] = ""
        char, size = fence["fence"][0], len(fence["fence"])
        if re.fullmatch(rf"[ \t]*{re.escape(char)}{{{size},}}[ \t]*", line):
            indent = len(fence["indent"])
            dedented = tuple(_dedent(text, indent) for text in content)
            marker = start >= 2 and lines[start - 2].strip() == CONSUMER_MARKER
            lang = fence["info"].lower().strip("{}.")
            doc.blocks.append(Block(doc.name, lang, start, dedented, marker))
            fence = None
        else:
            content.append(line)
    if fence is not None:
        doc.problems.append(
            Problem(doc.name, start, "unclosed code fence", "the block runs to the end of the file")
        )
    doc.prose = "\n".join(prose)
    doc.spans, doc.words = _spans(doc)
    _read_headings(doc, prose)
    doc.tables = _tables(prose)
    return doc


def _dedent(text: str, indent: int) -> str:
    stripped = len(text) - len(text.lstrip(" \t"))
    return text[min(indent, stripped) :]


_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def _spans(doc: Doc) -> tuple[list[Span], str]:
    spans: list[Span] = []
    words = list(doc.prose)
    for match in _SPAN.finditer(doc.prose):
        text = match.group(2)
        if "\n\n" in text:  # a span never crosses a paragraph
            continue
        text = text.replace("\n", " ")
        if text.startswith(" ") and text.endswith(" ") and text.strip():
            text = text[1:-1]
        spans.append(Span(doc.name, doc.line_of(match.start()), text))
        for offset in range(match.start(2), match.end(2)):
            if words[offset] != "\n":
                words[offset] = " "
    return spans, "".join(words)


def _read_headings(doc: Doc, prose: list[str]) -> None:
    seen: dict[str, int] = {}

    def add(text: str, number: int) -> None:
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        doc.anchors.setdefault(base if count == 0 else f"{base}-{count}", number)

    previous = ""
    for index, line in enumerate(prose):
        atx = _ATX.match(line)
        if atx:
            add(atx["text"], index + 1)
        elif (
            re.fullmatch(r" {0,3}(=+|-+)[ \t]*", line)
            and previous.strip()
            and not previous.lstrip().startswith(("|", "#", "-", "*", ">"))
        ):
            add(previous.strip(), index)
        for name in _HTML_ANCHOR.findall(line):
            doc.anchors.setdefault(name, index + 1)
        previous = line


def _cells(line: str) -> tuple[str, ...]:
    text = line.strip()
    text = text.removeprefix("|")
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    return tuple(cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", text))


def _tables(prose: list[str]) -> list[Table]:
    tables: list[Table] = []
    index = 0
    while index < len(prose) - 1:
        line, below = prose[index], prose[index + 1]
        if line.lstrip().startswith("|") and re.fullmatch(r"\s*\|?[\s:|-]*-[\s:|-]*", below):
            rows = []
            cursor = index + 2
            while cursor < len(prose) and prose[cursor].lstrip().startswith("|"):
                rows.append(Row(cursor + 1, _cells(prose[cursor])))
                cursor += 1
            tables.append(Table(index + 1, _cells(line), tuple(rows)))
            index = cursor
        else:
            index += 1
    return tables


# -- the project the docs describe ----------------------------------------------------------------
@dataclass
class Project:
    """The docs of a tree and what they must agree with."""

    root: Path
    docs: list[Doc]
    make_targets: frozenset[str]
    #: Parameter name -> its AllowedValues (empty: any value).
    parameters: Mapping[str, tuple[str, ...]]
    outputs: frozenset[str]
    parser: Callable[[], argparse.ArgumentParser]
    _cache: dict[Path, Doc | None] = field(default_factory=dict)

    def doc(self, name: str) -> Doc | None:
        return self.markdown(self.root / name)

    def markdown(self, path: Path) -> Doc | None:
        path = path.resolve()
        if path not in self._cache:
            known = [d for d in self.docs if d.path.resolve() == path]
            if known:
                self._cache[path] = known[0]
            elif path.is_file():
                self._cache[path] = parse_doc(path, self.root)
            else:
                self._cache[path] = None
        return self._cache[path]


def doc_paths(root: Path) -> list[Path]:
    """README.md and every docs/*.md (in subfolders too), in a stable order."""
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    if (root / "docs").is_dir():
        found += sorted((root / "docs").rglob("*.md"))
    return found


def load_project(
    root: Path,
    template: Mapping[str, Any],
    parser: Callable[[], argparse.ArgumentParser],
) -> Project:
    parameters = {
        name: tuple(str(v) for v in (body or {}).get("AllowedValues", ()))
        for name, body in (template.get("Parameters") or {}).items()
    }
    return Project(
        root=root,
        docs=[parse_doc(path, root) for path in doc_paths(root)],
        make_targets=make_targets(root / "Makefile"),
        parameters=parameters,
        outputs=frozenset(template.get("Outputs") or {}),
        parser=parser,
    )


def make_targets(makefile: Path) -> frozenset[str]:
    """The targets a user can name: ``target:`` lines and ``.PHONY`` of the Makefile and of the
    files it includes (pattern rules, ``$(VAR)`` targets and special targets left out)."""
    targets: set[str] = set()
    queue, seen = [makefile], set()
    while queue:
        path = queue.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        text = re.sub(r"\\\n", " ", path.read_text())
        for line in text.splitlines():
            if line.startswith("\t") or line.lstrip().startswith("#"):
                continue
            included = re.match(r"^-?include\s+(.+)$", line)
            if included:
                queue += [makefile.parent / name for name in included[1].split()]
                continue
            phony = re.match(r"^\.PHONY\s*:(.*)$", line)
            if phony:
                targets.update(phony[1].split())
                continue
            rule = re.match(r"^([^:=#\s][^:=#]*?)\s*::?(?!=)", line)
            if rule:
                targets.update(
                    t for t in rule[1].split() if not t.startswith(".") and not set(t) & set("$%")
                )
    return frozenset(targets)


# -- structure ---------------------------------------------------------------------------------
_COMMAND_LINE = re.compile(r"^\s*(\$ |schwab-tokens\s+\S|make(\s+\S|$))")


def check_structure(project: Project) -> list[Problem]:
    problems: list[Problem] = []
    for doc in project.docs:
        problems += doc.problems
        fences = {block.line for block in doc.blocks}
        for index, line in enumerate(doc.lines):
            if line.strip() != CONSUMER_MARKER or index + 2 in fences:
                continue
            problems.append(
                Problem(
                    doc.name,
                    index + 1,
                    "consumer marker without a block",
                    f"{CONSUMER_MARKER} must be on the line right above a ```python fence",
                )
            )
        for block in doc.blocks:
            if block.consumer and block.lang not in PYTHON_LANGS:
                problems.append(
                    Problem(
                        doc.name,
                        block.line,
                        f"consumer marker above a ```{block.lang} block",
                        "only ```python blocks can be run as a consumer",
                    )
                )
            if block.lang not in TEXT_LANGS:
                continue
            for number, line in block.numbered():
                if _COMMAND_LINE.match(line):
                    problems.append(
                        Problem(
                            doc.name,
                            number,
                            f"shell command in a ```{block.lang or '(untagged)'} block: "
                            f"{line.strip()!r}",
                            "shell commands go in ```sh (or bash/console/shell) blocks, "
                            "where this test checks them",
                        )
                    )
    return problems


# -- links ----------------------------------------------------------------------------------------
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
_HREF = re.compile(r"\b(?:href|src)=\"([^\"]+)\"", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def links(doc: Doc) -> Iterator[tuple[int, str]]:
    """(line, target) of every link and image in the doc's prose (not in code)."""
    found: list[tuple[int, str]] = []
    for pattern in (_INLINE_LINK, _REFERENCE, _HREF):
        for match in pattern.finditer(doc.words):
            target = match.group(1).strip("<>")
            found.append((doc.line_of(match.start()), target))
    return iter(sorted(found))


def check_links(project: Project) -> list[Problem]:
    problems: list[Problem] = []
    root = project.root.resolve()
    for doc in project.docs:
        for line, target in links(doc):
            if _SCHEME.match(target) or target.startswith("//"):
                continue  # external: never fetched
            where, _, anchor = target.partition("#")
            where = urllib.parse.unquote(where)
            if not where:
                resolved = doc.path.resolve()
            elif where.startswith("/"):
                resolved = (root / where.lstrip("/")).resolve()
            else:
                resolved = (doc.path.parent / where).resolve()
            if not resolved.is_relative_to(root):
                problems.append(
                    Problem(doc.name, line, f"link {target!r}", "points outside the repository")
                )
                continue
            if not resolved.exists():
                problems.append(
                    Problem(
                        doc.name,
                        line,
                        f"broken link {target!r}",
                        f"{resolved.relative_to(root).as_posix()} does not exist",
                    )
                )
                continue
            if not anchor or resolved.suffix.lower() != ".md":
                continue
            linked = project.markdown(resolved)
            assert linked is not None
            anchor = urllib.parse.unquote(anchor)
            if anchor not in linked.anchors:
                close = difflib.get_close_matches(anchor, list(linked.anchors), n=1)
                hint = f"; did you mean #{close[0]}?" if close else ""
                problems.append(
                    Problem(
                        doc.name,
                        line,
                        f"broken anchor {target!r}",
                        f"{linked.name} has no heading whose slug is {anchor!r}{hint}",
                    )
                )
    return problems


# -- commands -------------------------------------------------------------------------------------
def shell_lines(block: Block) -> Iterator[tuple[int, str]]:
    """(line, command line) of a shell block: prompts stripped, continuations joined, output
    lines (in a block with ``$ `` prompts), comment lines and heredoc bodies skipped."""
    console = block.lang == "console" or any(line.lstrip().startswith("$ ") for line in block.lines)
    pending: list[str] = []
    start = 0
    heredoc: str | None = None
    for number, raw in block.numbered():
        line = raw.rstrip()
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if pending:
            text = line.lstrip()
            if console and text.startswith("> "):
                text = text[2:].lstrip()
        else:
            text = line.lstrip()
            if console:
                if not text.startswith("$ "):
                    continue  # output
                text = text[2:].lstrip()
            if not text or text.startswith("#"):
                continue
            start = number
        if text.endswith("\\"):
            pending.append(text[:-1].rstrip())
            continue
        pending.append(text)
        command = strip_comment(" ".join(pending))
        pending = []
        opened = re.search(r"<<-?\s*['\"]?([A-Za-z_]\w*)['\"]?", command)
        if opened:
            heredoc = opened[1]
        yield start, command
    if pending:
        yield start, strip_comment(" ".join(pending))


def strip_comment(command: str) -> str:
    """``command`` without a trailing `` # comment`` (a ``#`` inside quotes or a word stays)."""
    quote = ""
    for index, char in enumerate(command):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or command[index - 1].isspace()):
            return command[:index].rstrip()
    return command


_REDIRECT_OUT = re.compile(
    r"(?:(?<=\s)|^)(?:\d|&)?>>?(?:&\d+|\s*(?:\"[^\"]*\"|'[^']*'|[^\s|&;<>]+))"
)
_REDIRECT_IN = re.compile(r"(?:(?<=\s)|^)<(?![^\s]*>)\s*\S+")


def simple_commands(command: str, *, synopsis: bool = False) -> list[list[str]]:
    """The simple commands of one shell line, each as its words (assignments, keywords and
    wrappers in front dropped). ``synopsis``: ``[optional]`` brackets and ``...`` tolerated.
    Raises ``ValueError`` for a line the shell could not parse (an open quote)."""
    outer, inner = _substitutions(command)
    found: list[list[str]] = []
    for text in inner:
        found += simple_commands(text, synopsis=synopsis)
    outer = _REDIRECT_IN.sub(" ", _REDIRECT_OUT.sub(" ", outer))
    lexer = shlex.shlex(outer, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    segment: list[str] = []
    for token in [*lexer, ";"]:
        if token and set(token) <= set("|&;"):
            words = _command_words(segment, synopsis)
            if words:
                found.append(words)
            segment = []
        else:
            segment.append(token)
    return found


def _command_words(words: list[str], synopsis: bool) -> list[str]:
    wrapper = False
    while words:
        if words[0] in _PREFIX_WORDS or _ASSIGNMENT.match(words[0]):
            words = words[1:]
        elif words[0] == "env":
            words, wrapper = words[1:], True
        elif wrapper and words[0].startswith("-"):
            words = words[1:]
        else:
            break
    while words and words[-1] in (")", "}"):
        words = words[:-1]
    if synopsis:
        words = [w.strip("[]") for w in words if w.strip("[]") not in ("", "...", "…")]
    return words


def _substitutions(command: str) -> tuple[str, list[str]]:
    """``command`` with each ``$(...)`` replaced by a placeholder word, and their contents."""
    inner: list[str] = []
    out: list[str] = []
    index, quote = 0, ""
    while index < len(command):
        char = command[index]
        if quote == "'" and char != "'":
            out.append(char)
        elif char == "'" and quote in ("", "'"):
            quote = "" if quote else "'"
            out.append(char)
        elif char == '"':
            quote = "" if quote == '"' else '"'
            out.append(char)
        elif command.startswith("$(", index) and not command.startswith("$((", index):
            depth, cursor = 1, index + 2
            while cursor < len(command) and depth:
                depth += {"(": 1, ")": -1}.get(command[cursor], 0)
                cursor += 1
            inner.append(command[index + 2 : cursor - 1])
            out.append("SUBST")
            index = cursor
            continue
        else:
            out.append(char)
        index += 1
    return "".join(out), inner


def cli_error(parser: argparse.ArgumentParser, args: Sequence[str]) -> str | None:
    """argparse's complaint about ``schwab-tokens ARGS`` (None: it parses). A complaint about a
    placeholder's value (an ``invalid choice: '<format>'``) is no complaint."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(list(args))
        except SystemExit as exc:
            if exc.code in (0, None):
                return None  # --help, --version
            lines = [line for line in stderr.getvalue().splitlines() if "error:" in line]
            message = lines[-1] if lines else stderr.getvalue().strip() or f"exit {exc.code}"
            message = message.split("error:", 1)[-1].strip().removesuffix(" (see --help)")
            value = re.search(r"invalid (?:choice|\w+ value): '([^']*)'", message)
            if value and _PLACEHOLDER.match(value[1]):
                return None
            return message
    return None


def make_words(words: Sequence[str]) -> tuple[list[str], bool]:
    """The targets of ``make ARGS`` and whether they are this Makefile's (no ``-C``/``-f``)."""
    targets: list[str] = []
    own = True
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("-C", "-f", "--directory", "--file", "--makefile"):
            own, skip = False, True
        elif word.startswith(("-C", "-f", "--directory=", "--file=", "--makefile=")):
            own = False
        elif word in ("-j", "-l", "-o", "-W"):
            skip = True
        elif word.startswith("-") or _ASSIGNMENT.match(word):
            continue
        else:
            targets.append(word)
    return targets, own


#: An inline span that runs ``schwab-tokens ARGS`` or ``make ARGS`` (first, or after ``&&``,
#: ``;`` or ``|``); ``schwab-tokens`` or ``make`` alone names the tool, and is no command.
_INLINE_COMMAND = re.compile(r"(?:^|[;&|]\s*)(?:schwab-tokens|make)\s+\S")


def _commands_in(project: Project) -> Iterator[tuple[str, int, str, list[str]]]:
    """(doc, line, shown text, words) of every simple command in shell blocks and in inline
    spans that run ``schwab-tokens`` or ``make`` (see ``_INLINE_COMMAND``)."""
    for doc in project.docs:
        for block in doc.blocks:
            if block.lang not in SHELL_LANGS:
                continue
            for line, command in shell_lines(block):
                try:
                    commands = simple_commands(command)
                except ValueError as exc:
                    yield doc.name, line, command, ["<unparsable>", str(exc)]
                    continue
                for words in commands:
                    yield doc.name, line, command, words
        for span in doc.spans:
            if not _INLINE_COMMAND.search(span.text):
                continue
            try:
                commands = simple_commands(span.text, synopsis=True)
            except ValueError as exc:
                yield doc.name, span.line, span.text, ["<unparsable>", str(exc)]
                continue
            for words in commands:
                yield doc.name, span.line, span.text, words


def check_commands(project: Project) -> list[Problem]:
    problems: list[Problem] = []
    parser = project.parser()
    for name, line, shown, words in _commands_in(project):
        program = words[0].rsplit("/", 1)[-1]
        if words[0] == "<unparsable>":
            problems.append(
                Problem(name, line, f"cannot parse {shown!r}", f"as the shell would: {words[1]}")
            )
        elif program == "schwab-tokens" or (
            re.fullmatch(r"python3?(\.\d+)?", program) and words[1:3] == ["-m", "schwab_tokens"]
        ):
            args = words[1:] if program == "schwab-tokens" else words[3:]
            error = cli_error(parser, args)
            if error:
                problems.append(
                    Problem(
                        name,
                        line,
                        f"`schwab-tokens {' '.join(args)}` is refused by the CLI",
                        f"schwab_tokens.commands.parser() says: {error}",
                    )
                )
        elif program in ("make", "gmake"):
            targets, own = make_words(words[1:])
            for target in targets if own else []:
                if target not in project.make_targets:
                    close = difflib.get_close_matches(target, sorted(project.make_targets), n=1)
                    hint = f"; did you mean `make {close[0]}`?" if close else ""
                    problems.append(
                        Problem(
                            name,
                            line,
                            f"`make {target}` is not a target",
                            f"the Makefile and the files it includes define no {target!r}{hint}",
                        )
                    )
    return problems


# -- the template's parameters and outputs ------------------------------------------------------
def _named_table(doc: Doc, title: str) -> list[Table]:
    return [t for t in doc.tables if t.header and t.header[0].strip().lower() == title]


def check_tables(project: Project, deploy: str = "docs/deploy.md") -> list[Problem]:
    doc = project.doc(deploy)
    if doc is None:
        return [
            Problem(
                deploy,
                1,
                "missing file",
                "it must hold the `| parameter |` and `| output |` tables of template.yaml",
            )
        ]
    problems: list[Problem] = []
    for title, kind, wanted in (
        ("parameter", "parameter", set(project.parameters)),
        ("output", "output", set(project.outputs)),
    ):
        tables = _named_table(doc, title)
        if not tables:
            problems.append(
                Problem(
                    doc.name,
                    1,
                    f"no `| {title} |` table",
                    f"docs/deploy.md lists every {kind} of template.yaml in a table whose header "
                    f"row starts `| {title} |`",
                )
            )
            continue
        listed: dict[str, int] = {}
        for table in tables:
            for row in table.rows:
                names = re.findall(r"`([^`]+)`", row.cells[0]) if row.cells else []
                if not names:
                    problems.append(
                        Problem(
                            doc.name,
                            row.line,
                            f"{kind} row without a name",
                            f"the first cell holds the {kind}'s name in backticks",
                        )
                    )
                for found in names:
                    if found in listed:
                        problems.append(
                            Problem(
                                doc.name,
                                row.line,
                                f"{kind} `{found}` listed twice",
                                f"first at line {listed[found]}",
                            )
                        )
                        continue
                    listed[found] = row.line
                    if found not in wanted:
                        close = difflib.get_close_matches(found, sorted(wanted), n=1)
                        hint = f"; did you mean `{close[0]}`?" if close else ""
                        problems.append(
                            Problem(
                                doc.name,
                                row.line,
                                f"`{found}` is not a{'n' if kind == 'output' else ''} {kind} "
                                "of template.yaml",
                                f"the table lists exactly the template's {kind}s{hint}",
                            )
                        )
        for missing in sorted(wanted - set(listed)):
            problems.append(
                Problem(
                    doc.name,
                    tables[0].line,
                    f"{kind} `{missing}` is missing from the table",
                    f"template.yaml has it; the `| {title} |` table must list every {kind}",
                )
            )
    return problems


_PARAMETER_MENTION = re.compile(rf"\b[Tt]he\s+`({_CAMEL})`\s+parameter\b")
_OUTPUT_MENTIONS = (
    re.compile(rf"\b(?:[Tt]he|stack's)\s+`({_CAMEL})`\s+(?:stack\s+)?output\b"),
    re.compile(rf"\bstack(?:'s)?\s+output\s+`({_CAMEL})`"),
)
_ASSIGNED = re.compile(rf"^({_CAMEL})=(.*)$")


def check_mentions(project: Project) -> list[Problem]:
    problems: list[Problem] = []
    for doc in project.docs:
        raw = doc.prose  # the mentions' backticks are part of the pattern
        for match in _PARAMETER_MENTION.finditer(raw):
            problems += _unknown(project, doc.name, doc.line_of(match.start()), match[1], "p")
        for pattern in _OUTPUT_MENTIONS:
            for match in pattern.finditer(raw):
                problems += _unknown(project, doc.name, doc.line_of(match.start()), match[1], "o")
        for span in doc.spans:
            words = span.text.split()
            if words and all(_ASSIGNED.match(w) for w in words):
                for word in words:
                    problems += _assignment(project, doc.name, span.line, word)
        for block in doc.blocks:
            if block.lang not in SHELL_LANGS:
                continue
            for line, command in shell_lines(block):
                with contextlib.suppress(ValueError):  # check_commands reports it
                    for words in simple_commands(command):
                        for word in _overrides(words):
                            problems += _assignment(project, doc.name, line, word)
    return problems


def _overrides(words: list[str]) -> Iterator[str]:
    """The ``Name=Value`` words after ``--parameter-overrides`` (also in
    ``ParameterKey=Name,ParameterValue=Value`` form)."""
    active = False
    for word in words:
        if word == "--parameter-overrides":
            active = True
        elif word.startswith("--"):
            active = False
        elif active:
            pair = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", word)
            yield f"{pair[1]}={pair[2]}" if pair else word


def _unknown(project: Project, path: str, line: int, name: str, kind: str) -> list[Problem]:
    names = set(project.parameters) if kind == "p" else set(project.outputs)
    if name in names:
        return []
    what = "parameter" if kind == "p" else "output"
    close = difflib.get_close_matches(name, sorted(names), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return [
        Problem(
            path,
            line,
            f"the `{name}` {what}",
            f"template.yaml has no {what} {name!r}{hint}",
        )
    ]


def _assignment(project: Project, path: str, line: int, word: str) -> list[Problem]:
    match = _ASSIGNED.match(word)
    if not match:
        return []
    name, value = match[1], match[2]
    if name not in project.parameters:
        close = difflib.get_close_matches(name, sorted(project.parameters), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return [Problem(path, line, f"`{word}`", f"template.yaml has no parameter {name!r}{hint}")]
    allowed = project.parameters[name]
    values = [v for v in value.split("|") if v and not _PLACEHOLDER.match(v)]
    wrong = [v for v in values if allowed and v not in allowed]
    if wrong:
        return [
            Problem(
                path,
                line,
                f"`{word}`",
                f"{name} takes one of {', '.join(allowed)}; not {', '.join(wrong)}",
            )
        ]
    return []


# -- python ------------------------------------------------------------------------------------
def python_blocks(project: Project) -> list[Block]:
    return [b for d in project.docs for b in d.blocks if b.lang in PYTHON_LANGS]


def check_python(project: Project) -> list[Problem]:
    problems: list[Problem] = []
    for block in python_blocks(project):
        try:
            compile(block.source(), block.path, "exec")
        except SyntaxError as exc:
            problems.append(
                Problem(
                    block.path,
                    exc.lineno or block.line,
                    "python block does not compile",
                    f"{exc.msg} (block at line {block.line})",
                )
            )
    return problems


def consumer_blocks(project: Project) -> list[Block]:
    return [b for b in python_blocks(project) if b.consumer]


def all_checks(project: Project) -> list[Problem]:
    """Every static check (everything but running the consumer blocks)."""
    checks: Iterable[Callable[[Project], list[Problem]]] = (
        check_structure,
        check_links,
        check_commands,
        check_tables,
        check_mentions,
        check_python,
    )
    return [problem for check in checks for problem in check(project)]
