"""Command-line options the example scripts share: which registry, and where the models' server is."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from taskmodels.sections import ProviderSettings
from taskmodels.settings import Settings, load_settings

__all__ = ["parse_args", "settings_from_args"]

# The providers that speak the OpenAI protocol; --base-url points both at one server.
_OPENAI_STYLE = ("openai", "openai-compatible")


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--registry", type=Path, default=None, help="registry file (default: TASKMODELS_REGISTRY_PATH or settings/)"
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help="an OpenAI-compatible server for 'openai' and 'openai-compatible' models, e.g. http://127.0.0.1:8080/v1",
    )
    parser.add_argument("--task", default="clustering", help="the task to run (default: clustering)")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the registry path and base URL from the command line on top."""
    overrides: dict[str, object] = {}
    if args.registry is not None:
        overrides["registry_path"] = args.registry
    if args.base_url is not None:
        overrides["providers"] = {name: ProviderSettings(base_url=args.base_url) for name in _OPENAI_STYLE}
    return load_settings(**overrides)
