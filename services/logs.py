"""Structured logging: one JSON object per line (or a readable text line), carrying the current request's
trace_id."""
import contextvars
import json
import logging
import time

trace_id_var = contextvars.ContextVar("trace_id", default=None)

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id and the record's extra fields."""

    def entry(self, record):
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None) or trace_id_var.get()
        if trace_id:
            entry["trace_id"] = trace_id
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and k != "trace_id"})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return entry

    def format(self, record):
        return json.dumps(self.entry(record), default=str)


class TextFormatter(JsonFormatter):
    """The same fields for a person reading a terminal: ``time LEVEL logger message key=value …``."""

    def format(self, record):
        entry = self.entry(record)
        head = " ".join(str(entry.pop(key)) for key in ("ts", "level", "logger", "msg"))
        trace = entry.pop("exc", None)
        line = " ".join([head, *(f"{key}={value}" for key, value in entry.items() if value is not None)])
        return f"{line}\n{trace}" if trace else line


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def configure_logging(level, log_format="json"):
    handler = logging.StreamHandler()
    handler.setFormatter(FORMATTERS[log_format]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Tornado's own access log is replaced by the application's log_function.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
