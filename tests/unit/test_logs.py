"""The one structured log format of the webhook and the operator."""

from __future__ import annotations

import json
import logging

import pytest

from flox_isa.logs import JsonFormatter, setup_logging


def formatted(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "flox_isa.test", "levelno": logging.INFO, "levelname": "INFO",
         "msg": "reconciled %s", "args": ("tw/a",), "created": 1_700_000_000.123, **extra}
    )  # fmt: skip
    return dict(json.loads(JsonFormatter().format(record)))


def test_a_line_carries_time_in_ms_level_logger_message_and_the_record_fields() -> None:
    line = formatted(fields={"uid": "u1", "variant": "avx2"}, ticketworker="ns/a")
    assert line == {
        "time": "2023-11-14T22:13:20.123+00:00",
        "level": "info",
        "logger": "flox_isa.test",
        "message": "reconciled tw/a",
        "uid": "u1",
        "variant": "avx2",
        "ticketworker": "ns/a",
    }


def test_an_exception_is_kept_as_text() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys  # noqa: PLC0415

        line = formatted(exc_info=sys.exc_info())
    assert "ValueError: bad" in str(line["error"])


def test_setup_routes_everything_through_one_handler_and_quiets_chatty_loggers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", quiet=["chatty"])
        logging.getLogger("chatty").info("per-object noise")
        logging.getLogger("uvicorn.error").info("started")
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("chatty").setLevel(logging.NOTSET)
    assert [x["message"] for x in lines] == ["started"]
