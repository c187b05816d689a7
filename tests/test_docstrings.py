"""Every public function, class and method of the library has a short docstring.

The docstring's first line is a summary a caller reads in a tooltip or in ``help()``: one
sentence of at most ``SUMMARY_LIMIT`` characters, ending in a full stop, with a blank line
before any detail (what it returns and raises). Methods may inherit their docstring from the
Protocol or base class they implement (``inspect.getdoc`` finds it); classes may not, since a
class that only repeats its base's docstring (or the signature a dataclass writes) says nothing
about itself.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from types import FunctionType, ModuleType

import schwab_tokens

# The summary fits on the first source line of a method's docstring under the project's
# 100-column limit: 100 - 8 (indentation in a class) - 3 (opening quotes) = 89. One limit for
# every definition, so a summary can move between a module and a class unchanged.
SUMMARY_LIMIT = 89

# A full stop, question or exclamation mark followed by a space and a capital starts a second
# sentence ("e.g. " and "i.e. " are followed by lower case, so they pass).
SECOND_SENTENCE = re.compile(r"[.!?] [A-Z]")


def library_modules() -> list[ModuleType]:
    """Every module of the library, imported, but ``__main__``, which runs the CLI on import."""
    names = [schwab_tokens.__name__] + [
        info.name
        for info in pkgutil.walk_packages(schwab_tokens.__path__, f"{schwab_tokens.__name__}.")
        if not info.name.endswith(".__main__")
    ]
    return [importlib.import_module(name) for name in sorted(names)]


def is_public(name: str) -> bool:
    return not name.startswith("_")


def methods(cls: type) -> Iterator[tuple[str, object]]:
    """The public methods and properties a class defines itself, as ``getattr`` returns them."""
    for name, raw in vars(cls).items():
        if not is_public(name):
            continue
        if isinstance(raw, staticmethod | classmethod):
            raw = raw.__func__
        if isinstance(raw, FunctionType | property):
            yield name, getattr(cls, name)


def definitions(module: ModuleType) -> Iterator[tuple[str, object, str | None]]:
    """(qualified name, object, docstring) for each public definition made in the module."""
    for name, obj in vars(module).items():
        if not is_public(name) or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj):
            own = vars(obj).get("__doc__")
            if own is not None and own.startswith(f"{obj.__name__}("):
                own = None  # dataclasses write the signature where no docstring was given
            yield name, obj, inspect.cleandoc(own) if own else None
            for method_name, method in methods(obj):
                yield f"{name}.{method_name}", method, inspect.getdoc(method)
        elif inspect.isfunction(inspect.unwrap(obj)):  # functools.cache'd functions too
            yield name, obj, inspect.getdoc(obj)


def problem(doc: str | None) -> str | None:
    """What is wrong with a docstring, or None when it has a short one-sentence summary."""
    if not doc or not doc.strip():
        return "no docstring"
    lines = doc.splitlines()
    summary = lines[0].strip()
    if len(summary) > SUMMARY_LIMIT:
        return f"summary of {len(summary)} characters (at most {SUMMARY_LIMIT})"
    if not summary.endswith((".", "?", "!")):
        return "summary does not end a sentence on its first line"
    if SECOND_SENTENCE.search(summary):
        return "summary holds more than one sentence"
    if len(lines) > 1 and lines[1].strip():
        return "no blank line after the summary"
    return None


def test_every_public_definition_has_a_short_one_sentence_docstring() -> None:
    offenders = [
        f"{module.__name__}:{name}: {why}"
        for module in library_modules()
        for name, _, doc in definitions(module)
        if (why := problem(doc)) is not None
    ]
    assert offenders == [], f"{len(offenders)} docstrings to write or shorten:\n" + "\n".join(
        offenders
    )


def test_the_walk_finds_the_library() -> None:
    """The check above cannot pass by finding nothing."""
    modules = {module.__name__ for module in library_modules()}
    assert {"schwab_tokens.errors", "schwab_tokens.stores.base"} <= modules
    found = {
        f"{module.__name__}:{name}"
        for module in library_modules()
        for name, _, _ in definitions(module)
    }
    assert "schwab_tokens.errors:UnexpectedError.wrap" in found
    assert len(found) > 300


def test_the_check_names_what_is_wrong() -> None:
    assert problem(None) == "no docstring"
    assert problem("Return the token.") is None
    assert problem("Return the token.\n\nRaises LoginRequired when there is none.") is None
    assert problem("Return the token\nfrom the store.") == (
        "summary does not end a sentence on its first line"
    )
    assert problem("Return the token. Raise when absent.") == (
        "summary holds more than one sentence"
    )
    assert problem("Return it.\nRaises LoginRequired.") == "no blank line after the summary"
    assert problem("x" * SUMMARY_LIMIT + ".") is not None
