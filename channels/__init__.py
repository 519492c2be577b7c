"""One adapter per touchpoint; each hands raw envelopes to an `emit` callable it is given."""
