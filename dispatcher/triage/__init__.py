"""Triage: rules that admins write in TOML, compiled once per load, explaining each decision."""

from dispatcher.triage.engine import Acknowledgement, Decision, RuleSet, SlaDue
from dispatcher.triage.facts import Customer, Facts, History
from dispatcher.triage.load import RulesError, load_rules, watched_files
from dispatcher.triage.router import DefaultQueue, RulesRouter, to_triage
from dispatcher.triage.state import Hit

__all__ = [
    "Acknowledgement",
    "Customer",
    "Decision",
    "DefaultQueue",
    "Facts",
    "History",
    "Hit",
    "RuleSet",
    "RulesError",
    "RulesRouter",
    "SlaDue",
    "load_rules",
    "to_triage",
    "watched_files",
]
