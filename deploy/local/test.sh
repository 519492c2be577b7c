#!/usr/bin/env bash
# Set up and run the test suite against a real local RabbitMQ. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_venv "[test]"
ensure_rabbitmq
ensure_dovecot
ensure_chromium
exec "$VENV/bin/python" -m pytest "$@"
