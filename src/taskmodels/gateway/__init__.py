"""The OpenAI-compatible gateway (``taskmodels serve``) and its governance: keys, per-key limits, metrics."""
