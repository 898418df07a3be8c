"""Log records captured in tests, from the real ``cliproxy`` loggers."""

import contextlib
import logging


class RecordingHandler(logging.Handler):
    """Keeps every record it is given, in order, in ``records``."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def recording(level=None, name="cliproxy"):
    """A ``RecordingHandler`` on the ``name`` logger while the block runs, with the
    logger at ``level`` meanwhile when one is given; both undone after."""
    handler = RecordingHandler()
    logger = logging.getLogger(name)
    old_level = logger.level
    logger.addHandler(handler)
    if level is not None:
        logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
