"""Providers: the port the call engine uses (``ModelPort``), the HTTP mapping base that implements it
(``BaseModelProvider``, one subclass per wire protocol), and ``ModelProviderFactory`` that builds them."""

from taskmodels.providers.base import BaseModelProvider, HttpRequest, StreamDecoder
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.providers.port import ModelPort, ProviderClass

__all__ = ["BaseModelProvider", "HttpRequest", "ModelPort", "ModelProviderFactory", "ProviderClass", "StreamDecoder"]
