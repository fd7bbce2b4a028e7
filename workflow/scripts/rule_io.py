"""What every rule's script does at its edges: log to the rule's log, refuse bad input with
a message that names the fix (InputError), and write outputs atomically."""

import contextlib
import logging
import os
import sys
from pathlib import Path


log = logging.getLogger("ivae")


class InputError(ValueError):
    """Bad user input: the message says which dataset, which file and what to fix."""

#: ``log.info(..., extra=FILE_ONLY)``: a detail for the rule's log file, kept off the console
#: (e.g. every epoch of a training, when several trainings share one console).
FILE_ONLY = {"file_only": True}


def console_filter(record: logging.LogRecord) -> bool:
    """The console's filter: every warning and error, and the lines not marked FILE_ONLY."""
    return record.levelno >= logging.WARNING or not getattr(record, "file_only", False)


def setup_logging(log_path: str | os.PathLike | None, *, label: str | None = None) -> logging.Logger:
    """Send the ``ivae`` logger and uncaught exceptions to the rule's log file and stderr.

    Lines logged with ``extra=FILE_ONLY`` go to the log file only; without a log file they go
    to stderr, the one place left. ``label`` (e.g. the job's dataset and seed) starts every
    console line, so that the lines of parallel jobs sharing one console say whose they are.
    """
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    prefix = f"{label.replace('%', '%%')}: " if label else ""
    console.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(console)
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        console.addFilter(console_filter)
        file = logging.FileHandler(log_path, mode="w")
        file.setFormatter(fmt)
        log.addHandler(file)

    def excepthook(exc_type, exc, tb):
        if issubclass(exc_type, InputError):  # the message is the whole story
            log.error("%s", exc)
        else:
            log.error("uncaught exception", exc_info=(exc_type, exc, tb))

    sys.excepthook = excepthook
    return log


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    An interrupted run therefore never leaves a truncated file under the final name.
    The temporary name keeps the suffix, so writers that dispatch on it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_h5ad(adata, path) -> None:
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
