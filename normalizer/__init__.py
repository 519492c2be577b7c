"""Pure functions from raw input to the canonical case-open message; no I/O, no other imports."""
