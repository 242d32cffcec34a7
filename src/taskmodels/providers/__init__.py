"""Providers: one ``BaseModelProvider`` subclass per wire protocol, built by ``ModelProviderFactory``."""

from taskmodels.providers.base import BaseModelProvider, HttpRequest, StreamDecoder
from taskmodels.providers.factory import ModelProviderFactory

__all__ = ["BaseModelProvider", "HttpRequest", "ModelProviderFactory", "StreamDecoder"]
