"""AllModelsFailedError's first line says what to do first: the first actionable cause in the chain's order."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from taskmodels.errors import (
    AllModelsFailedError,
    AuthenticationError,
    ConfigurationError,
    MissingCredentialError,
    ProviderConnectionError,
    ProviderUnavailableError,
    RateLimitError,
)

LISTING = "task 't': every model failed:\n  a (openai, try 1): ...\n  b (anthropic, try 1): ..."


def failed(*errors: Exception) -> AllModelsFailedError:
    return AllModelsFailedError(LISTING, task="t", attempts=[], errors=errors)


def down(model: str) -> ProviderUnavailableError:
    return ProviderUnavailableError(
        "openai returned 503: overloaded", provider="openai", model_id=model, status_code=503
    )


def test_a_refused_key_is_named_before_the_outage_that_came_first() -> None:
    refused = AuthenticationError("anthropic returned 401: invalid x-api-key", provider="anthropic", model_id="b")
    refused.status_code = 401
    error = failed(down("a"), refused)
    head, _, rest = str(error).partition("\n")
    assert head == (
        "task 't': every model failed; fix first: b: AuthenticationError 401: anthropic returned 401: invalid "
        "x-api-key (the provider refused the key: check the anthropic key; taskmodels check names its variable):"
    )
    assert rest == LISTING.partition("\n")[2]  # every attempt is still listed
    assert list(error.exceptions) == [error.exceptions[0], refused]  # the group is unchanged


def test_a_missing_key_names_its_variables() -> None:
    missing = MissingCredentialError(
        "model 'a' (openai) has no API key: set OPENAI_API_KEY or TASKMODELS_PROVIDERS__OPENAI__API_KEY",
        provider="openai",
        model_id="a",
        variables=["OPENAI_API_KEY", "TASKMODELS_PROVIDERS__OPENAI__API_KEY"],
    )
    assert str(failed(missing, down("b"))).partition("\n")[0] == (
        "task 't': every model failed; fix first: a: no API key: set OPENAI_API_KEY or "
        "TASKMODELS_PROVIDERS__OPENAI__API_KEY:"
    )


def test_an_unreachable_server_says_how_to_check_it() -> None:
    refused = ProviderConnectionError("could not connect to 127.0.0.1:8080", provider="openai-compatible", model_id="a")
    assert str(failed(refused)).partition("\n")[0] == (
        "task 't': every model failed; fix first: a: ProviderConnectionError: could not connect to 127.0.0.1:8080 "
        "(is the server running? taskmodels check --ping reaches every endpoint):"
    )


def test_an_endpoint_the_configuration_lacks_is_said_as_it_is() -> None:
    assert str(failed(down("a"), ConfigurationError("model 'b' needs an endpoint\nmore"))).partition("\n")[0] == (
        "task 't': every model failed; fix first: model 'b' needs an endpoint:"
    )


def test_without_anything_to_fix_the_first_error_is_named() -> None:
    limited = RateLimitError("openai returned 429: slow down", provider="openai", model_id="a", status_code=429)
    assert str(failed(limited, down("b"))).partition("\n")[0] == (
        "task 't': every model failed; first: a: RateLimitError 429: openai returned 429: slow down:"
    )


def test_a_long_message_is_cut_to_one_short_line() -> None:
    error = failed(ProviderUnavailableError("x" * 1000 + "\nsecond line", provider="p", model_id="a"))
    head = str(error).partition("\n")[0]
    assert head == "task 't': every model failed; first: a: ProviderUnavailableError: " + "x" * 239 + "…:"


def test_no_errors_leaves_the_message_as_it_is() -> None:
    assert str(AllModelsFailedError(LISTING, task="t", attempts=[])) == LISTING


def test_the_summary_is_said_once_after_pickling() -> None:
    error = failed(down("a"))
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert str(copy).count("; first: ") == 1


async def test_a_new_user_without_keys_is_told_which_variable_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskmodels.containers import Container
    from taskmodels.starter import write_starter

    for name in list(os.environ):
        if name.startswith("TASKMODELS_") or name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    write_starter(tmp_path)
    container = Container()
    try:
        with pytest.raises(AllModelsFailedError) as info:
            await container.model_service().complete_with_task_model("clustering", prompt="hi")
    finally:
        await container.aclose()
    assert str(info.value).partition("\n")[0] == (
        "task 'clustering': every model failed; fix first: gpt-4o-mini: no API key: set OPENAI_API_KEY or "
        "TASKMODELS_PROVIDERS__OPENAI__API_KEY:"
    )
