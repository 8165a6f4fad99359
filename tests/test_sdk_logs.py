"""The Azure SDKs log each HTTP request and response, headers included, at INFO: a probe's
control plane log on Cosmos DB and Blob output grew 43 MB in 12 minutes. The app and the
agent quiet those loggers; the SDKs' warnings and errors still show."""

from __future__ import annotations

import logging

from azure.core.pipeline.policies import HttpLoggingPolicy
from azure.cosmos import _cosmos_http_logging_policy

from shared.wiring import SDK_HTTP_LOGGERS, quiet_azure_sdk_logs


def test_the_sdks_request_loggers_say_only_warnings_and_errors() -> None:
    # the names are the SDKs' own (a renamed logger would make the quieting do nothing)
    assert HttpLoggingPolicy().logger.name in SDK_HTTP_LOGGERS  # type: ignore[attr-defined]
    assert _cosmos_http_logging_policy.__name__ in SDK_HTTP_LOGGERS
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in SDK_HTTP_LOGGERS]
    saved = [root.level, *(lg.level for lg in loggers)]
    try:
        root.setLevel(logging.INFO)  # as the agent and the host log
        for logger in loggers:
            logger.setLevel(logging.NOTSET)
            assert logger.isEnabledFor(logging.INFO)  # loud before
        quiet_azure_sdk_logs()
        for logger in loggers:
            assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(saved[0])
        for logger, level in zip(loggers, saved[1:], strict=True):
            logger.setLevel(level)
