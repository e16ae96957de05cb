"""Structured JSON logs on stderr: one object per line, no personal data.

Our loggers emit JSON objects as messages; the formatter adds time, level and
logger. Anything else (third-party messages) is wrapped as ``{"message": ...}``.
Client addresses are never logged (aiohttp's own access logger is disabled).
"""

from __future__ import annotations

import logging
import sys
import time

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        try:
            parsed = orjson.loads(message) if message.startswith("{") else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            base.update(parsed)
        else:
            base["message"] = message
        if record.exc_info and record.levelno >= logging.ERROR:
            base["error"] = record.exc_info[0].__name__ if record.exc_info[0] else "unknown"
        return orjson.dumps(base).decode()


def configure_logging(*, access_log: bool = True, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("ehds.access").setLevel(logging.INFO if access_log else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


__all__ = ["JsonFormatter", "configure_logging"]
