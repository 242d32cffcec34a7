"""The public API: every exported name resolves, and nothing public is missing from ``__all__``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import taskmodels
import taskmodels.errors


def test_every_name_in_all_resolves() -> None:
    for name in taskmodels.__all__:
        assert getattr(taskmodels, name) is not None, name


def test_all_is_sorted_and_unique() -> None:
    assert list(taskmodels.__all__) == sorted(set(taskmodels.__all__))


def test_every_error_class_is_exported() -> None:
    errors = {
        name
        for name, value in vars(taskmodels.errors).items()
        if isinstance(value, type) and issubclass(value, taskmodels.errors.TaskModelsError)
    }
    assert errors <= set(taskmodels.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        taskmodels.NoSuchThing  # noqa: B018


def test_import_loads_neither_dependency_injector_nor_pydantic_settings() -> None:
    code = (
        "import sys, taskmodels; "
        "print(sorted(m for m in ('dependency_injector', 'pydantic_settings', 'httpx2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_core_modules_do_not_import_pydantic_settings_or_dependency_injector() -> None:
    code = (
        "import sys; import taskmodels.service, taskmodels.selection, taskmodels.registry, taskmodels.providers; "
        "print(sorted(m for m in ('dependency_injector', 'pydantic_settings') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_type_checking_imports_match_the_export_list() -> None:
    """Type checkers read the TYPE_CHECKING block; the lazy loader reads _EXPORTS: they must name the same things."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(taskmodels))
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.dump(stmt)
                for alias in stmt.names:
                    imported[alias.asname or alias.name] = str(stmt.module)
    assert imported == taskmodels._EXPORTS
