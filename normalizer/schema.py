"""The committed JSON Schemas of the messages on the broker, generated from the models."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from normalizer.acks import ACK_SCHEMA, AckRequest
from normalizer.model import SCHEMA, CaseOpen

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMA_FILE = SCHEMA_DIR / "case-open-1.json"
ACK_SCHEMA_FILE = SCHEMA_DIR / "acknowledgement-1.json"
MODELS: dict[str, tuple[type[BaseModel], Path]] = {
    SCHEMA: (CaseOpen, SCHEMA_FILE),
    ACK_SCHEMA: (AckRequest, ACK_SCHEMA_FILE),
}
"""Every message schema by its id, with the file it is committed in."""


def render_schema(name: str = SCHEMA) -> str:
    """The schema text as it must be committed: stable key order, trailing newline."""
    model, _ = MODELS[name]
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = name
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_schema() -> list[Path]:
    """Regenerate the committed schema files (run `ingest schema --write` after a change)."""
    for name, (_, path) in MODELS.items():
        path.write_text(render_schema(name), encoding="utf-8")
    return [path for _, path in MODELS.values()]
