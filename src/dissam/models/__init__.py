"""Network definitions (modules only: no file I/O, no downloads)."""
