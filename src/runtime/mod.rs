//! Async mechanism: executor, logger, signals, timeouts. No protocol knowledge.
