"""Logging: one line per significant event, as text (the default) or as JSON lines.

An event line is an ordinary log call whose `extra` is `event(name, **fields)`: the text
format shows only the message; the JSON format adds `event` and the fields. Any thread may
log; the handler writes whole lines to stderr.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

EVENT_ATTRIBUTE = "nacos_event"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_FORMATS = ("text", "json")
_CORE_KEYS = ("timestamp", "level", "logger", "message")


def event(name: str, **fields: Any) -> dict[str, Any]:
    """The `extra=` of a log call that records event `name` with `fields` (JSON-serialisable)."""
    return {EVENT_ATTRIBUTE: {"event": name, **fields}}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp (UTC, ISO 8601, ms), level, logger, message, then
    the event name and fields when the record carries them, and `exception` with the traceback
    when it has one. Event fields never replace the four core keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, EVENT_ATTRIBUTE, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in _CORE_KEYS:
                    line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send every record at `level` or above to `stream` (stderr) in `log_format` (text or json).

    Main thread, once, before the node starts; like logging.basicConfig, a no-op when the root
    logger already has handlers.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
