#!/usr/bin/env bash
# Set up and run the daemon on the embedded defaults: local RabbitMQ, SQLite under ./var,
# the web API on 127.0.0.1:8080. Extra arguments go to `ingest run`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_venv ""
ensure_rabbitmq
ensure_hash_exchange

if [ -z "${INGEST_CHANNELS__WEB__API_KEYS:-}" ]; then
  # A local key for trying the API; on a real server set INGEST_CHANNELS__WEB__API_KEYS.
  mkdir -p var
  [ -s var/dev-api-key ] || "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))' >var/dev-api-key
  INGEST_CHANNELS__WEB__API_KEYS="[\"$(cat var/dev-api-key)\"]"
  export INGEST_CHANNELS__WEB__API_KEYS
  say "API key for this machine is in var/dev-api-key"
fi
exec "$VENV/bin/ingest" run "$@"
