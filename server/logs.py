"""Logs: one JSON object per line (with any ``extra`` fields) for machines, plain lines for a
person at a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def wants_json(log_format: str, *, as_json: bool = True, stream: object = None) -> bool:
    """JSON lines unless asked for text, or, with "auto", when standard error is a
    terminal (a person reads it); ``as_json=False`` (DIENHONG_LOG_JSON) also asks for text."""
    if log_format == "text" or not as_json:
        return False
    if log_format == "json":
        return True
    if log_format != "auto":
        raise ValueError(f"DIENHONG_LOG_FORMAT is auto, json or text, not {log_format!r}")
    target = sys.stderr if stream is None else stream
    isatty = getattr(target, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(level: str, *, log_format: str = "json", as_json: bool = True) -> None:
    handler = logging.StreamHandler()
    if wants_json(log_format, as_json=as_json, stream=handler.stream):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Request lines are logged by our middleware, with fields.
    logging.getLogger("uvicorn.access").disabled = True
