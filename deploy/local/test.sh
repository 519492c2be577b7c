#!/usr/bin/env bash
# Set up and run the test suite against a real local RabbitMQ, PostgreSQL, Dovecot and
# Chromium (and Postfix, nginx and promtool for the deploy tests). Extra arguments go to pytest: `-m "not slow"` is the quick loop while working,
# `-n 0` runs in one process, a path or `-k` picks tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

say "the tests need RabbitMQ, PostgreSQL, Dovecot (dovecot-imapd), Chromium, Postfix, nginx and"
say "promtool (prometheus) on this machine;"
say "whatever is missing is installed with apt-get and started (root or sudo), once"
ensure_venv "[test]"
ensure_rabbitmq
ensure_hash_exchange
ensure_dovecot
ensure_chromium
ensure_postgresql
ensure_deploy_tools
# Bytecode caches on, whatever the environment says: without them every pytest worker
# rewrites the assertions of every test module again and every `ingest` process the tests
# start compiles the project anew (some 5 s of CPU per worker, half a second per command).
unset PYTHONDONTWRITEBYTECODE
workers="${INGEST_TEST_WORKERS:-4}"
say "running pytest on $workers workers: 6 to 10 minutes on 2 cores, the quick loop"
say "(-m \"not slow\") 2 to 3; the 15 slowest tests are listed at the end"
exec "$VENV/bin/python" -m pytest -n "$workers" --dist worksteal --durations=15 "$@"
