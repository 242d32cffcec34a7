"""``ModelProviderFactory``: a registry ``provider`` string to a ready ``ModelPort``.

A missing key surfaces here, when the port is built, as ``MissingCredentialError``
(configuration, naming the variables to set), never as a failed call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

import httpx2
from pydantic import SecretStr

from taskmodels.errors import ConfigurationError
from taskmodels.providers.port import ModelPort, ProviderClass, is_provider_class
from taskmodels.redaction import remember
from taskmodels.registry.schema import ModelConfig
from taskmodels.sections import ProviderSettings

if TYPE_CHECKING:
    from taskmodels.settings import Settings

__all__ = ["BUILTIN_PROVIDERS", "ENTRY_POINT_GROUP", "ModelProviderFactory"]

ENTRY_POINT_GROUP = "taskmodels.providers"

# Imported on first use, so `import taskmodels` pays for no provider module.
BUILTIN_PROVIDERS: Mapping[str, str] = {
    "openai": "taskmodels.providers.openai:OpenAIProvider",
    "openai-compatible": "taskmodels.providers.openai:OpenAICompatibleProvider",
    "azure-openai": "taskmodels.providers.azure:AzureOpenAIProvider",
    "anthropic": "taskmodels.providers.anthropic:AnthropicProvider",
    "gemini": "taskmodels.providers.gemini:GeminiProvider",
    "ollama": "taskmodels.providers.ollama:OllamaProvider",
}


_NOT_A_PROVIDER = "is not a BaseModelProvider subclass nor a class implementing ModelPort (complete, stream, embed)"


def _load(target: str) -> ProviderClass:
    module, _, attr = target.partition(":")
    cls = getattr(import_module(module), attr)
    if not is_provider_class(cls):
        raise ConfigurationError(f"{target} {_NOT_A_PROVIDER}")
    provider_class: ProviderClass = cls
    return provider_class


class ModelProviderFactory:
    """Builds one provider per model and keeps it; knows every provider name.

    Names come from the built-ins, the ``taskmodels.providers`` entry-point group
    and ``register_provider_implementation``, later ones winning.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        http_client: httpx2.AsyncClient | None = None,
        *,
        discover_entry_points: bool = True,
    ) -> None:
        self._settings = settings
        self._client = http_client
        self._targets: dict[str, str | ProviderClass] = dict(BUILTIN_PROVIDERS)
        if discover_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._targets[ep.name] = ep.value
        self._classes: dict[str, ProviderClass] = {}
        self._cache: dict[str, tuple[ModelConfig, ModelPort]] = {}
        self._lock = threading.Lock()

    def register_provider_implementation(self, name: str, cls: ProviderClass) -> None:
        """Serve registry entries whose ``provider`` is ``name`` with ``cls``: a ``BaseModelProvider``
        subclass, or any class implementing ``ModelPort`` with the same constructor."""
        if not is_provider_class(cls):
            raise TypeError(f"{cls!r} {_NOT_A_PROVIDER}")
        with self._lock:
            self._targets[name] = cls
            self._classes.pop(name, None)
            self._cache = {k: v for k, v in self._cache.items() if v[0].provider != name}

    def provider_names(self) -> frozenset[str]:
        return frozenset(self._targets)

    def get_provider_class(self, name: str) -> ProviderClass:
        cls = self._classes.get(name)
        if cls is None:
            target = self._targets.get(name)
            if target is None:
                known = ", ".join(sorted(self._targets))
                raise ConfigurationError(f"no provider implementation named {name!r} (known: {known})")
            cls = _load(target) if isinstance(target, str) else target
            self._classes[name] = cls
        return cls

    def create_provider_for_model(self, model: ModelConfig) -> ModelPort:
        """The port for ``model``, built once per model and reused while its entry is unchanged.

        ``model`` may be one deployment's view of a model (``ModelConfig.for_deployment``): each
        deployment gets its own port. Raises ``ConfigurationError`` when the model cannot be served as
        configured: an unknown provider, no base URL, or (``MissingCredentialError``) no key where one
        is required.
        """
        cached = self._cache.get(model.id)
        if cached is not None and cached[0] is model:  # the hot path: the very entry it was built for
            return cached[1]
        private = model.__pydantic_private__  # read directly: the property costs a pydantic lookup per call
        deployment = private.get("_deployment_id") if private else None
        key = model.id if deployment is None else f"{model.id}/{deployment}"
        if key != model.id:
            cached = self._cache.get(key)
        if cached is not None and (cached[0] is model or cached[0] == model):
            return cached[1]
        with self._lock:
            provider = self._build(model)
            self._cache[key] = (model, provider)
        return provider

    def create_provider_for_deployment(self, model: ModelConfig, deployment_id: str) -> ModelPort:
        """The port for one of ``model``'s deployments: its provider, URL, key and options over the model's."""
        for deployment in model.deployments:
            if deployment.id == deployment_id:
                return self.create_provider_for_model(model.for_deployment(deployment))
        raise ConfigurationError(f"model {model.id!r} has no deployment {deployment_id!r}")

    def _build(self, model: ModelConfig) -> ModelPort:
        cls = self.get_provider_class(model.provider)
        section = self._settings.provider_settings(model.provider) if self._settings is not None else ProviderSettings()
        api_key = section.api_key
        if model.api_key_env:
            value = self._settings.variable(model.api_key_env) if self._settings else os.environ.get(model.api_key_env)
            api_key = SecretStr(value) if value else None
        remember(api_key)  # whichever provider class uses it, the key is redacted from everything we emit
        if self._client is None:
            self._client = httpx2.AsyncClient()
        try:
            return cls(
                model,
                self._client,
                api_key=api_key,
                base_url=section.base_url,
                headers=section.headers,
                options=section.options,
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
