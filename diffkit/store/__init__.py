"""The run directory on disk: its format (rundir), checksummed atomic writes (manifest), the one-writer lock
(lock) and the cache of computed tensors (cache). It imports nothing above it."""
