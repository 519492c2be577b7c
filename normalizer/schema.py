"""The committed JSON Schema of the case-open message, generated from the model."""

from __future__ import annotations

import json
from pathlib import Path

from normalizer.model import CaseOpen

SCHEMA_FILE = Path(__file__).parent / "schemas" / "case-open-1.json"


def render_schema() -> str:
    """The schema text as it must be committed: stable key order, trailing newline."""
    schema = CaseOpen.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "case-open/1"
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    """Regenerate the committed schema file (run `ingest schema --write` after a model change)."""
    path.write_text(render_schema(), encoding="utf-8")
    return path
