"""Files on disk: atomic writes, locks, memory checks."""
