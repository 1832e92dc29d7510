"""The scripts' edges: one logging format, argparse from the docstring, run_main's exit statuses."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from attrition.core.errors import EXIT_BUG, PipelineError, disk_full
from attrition.core.files import clear_odd_entry
from attrition.core.names import DEBUG_ENV

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%SZ"  # UTC


class LogFileHandler(logging.FileHandler):
    """A log file that, when it cannot be written (a full disk), says so once on stderr instead of a
    traceback per line; failed names the error for the caller (fullprocess.py's exit status).
    Never written through a symlink, nor blocked by a directory in its place (clear_odd_entry)."""

    failed: OSError | None = None

    def _open(self):
        clear_odd_entry(Path(self.baseFilename))
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        error = sys.exc_info()[1]
        if self.failed is None:
            self.failed = error if isinstance(error, OSError) else OSError(str(error))
            sys.stderr.write(
                f"cannot write the log file {self.baseFilename} "
                f"({getattr(error, 'strerror', None) or error}): logging to stderr only\n"
            )


def setup_logging(name: str, log_file: Path | None = None) -> logging.Logger:
    """The one log format, to stderr (and a file if given). Entry points only."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(LogFileHandler(log_file, encoding="utf-8", errors="backslashreplace"))
    formatter = logging.Formatter(LOG_FORMAT, datefmt=LOG_DATEFMT)
    formatter.converter = time.gmtime
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    return logging.getLogger(name)


def command_line(doc: str) -> argparse.ArgumentParser:
    """An argparse parser whose --help page is the script's docstring."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def run_main(main, name: str) -> None:
    """Run an entry point: an expected failure is one log line and its class's exit status."""
    try:
        code = main()
    except PipelineError as error:
        logging.getLogger(name).error("%s", error)
        code = error.exit_code
    except KeyboardInterrupt:
        logging.getLogger(name).error("interrupted")
        code = 130
    except Exception as error:  # a bug, not bad input: still one line for cron logs
        full = disk_full(error)
        if full is not None:
            logging.getLogger(name).error("%s", full)
            sys.exit(full.exit_code)
        if os.environ.get(DEBUG_ENV):
            raise
        logging.getLogger(name).error(
            "unexpected %s: %s (run with %s=1 for a traceback)", type(error).__name__, error, DEBUG_ENV
        )
        code = EXIT_BUG
    sys.exit(code or 0)
