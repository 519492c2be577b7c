"""Fault injection over the whole daemon: the rerunnable soak (`python -m tests.faults.soak`)."""
