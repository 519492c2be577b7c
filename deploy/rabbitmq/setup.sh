#!/usr/bin/env bash
# Give the ingest daemon a vhost of its own on RabbitMQ, with least-privilege users, and the
# policies its topology needs. Run on a broker node as root (or the rabbitmq user); safe to
# run again (an existing user keeps its password unless one is given).
#
#   deploy/rabbitmq/setup.sh [--vhost ingest] [--prefix ""] [--env-dir /etc/ingest]
#
# Users (passwords from INGEST_RABBITMQ_<ADMIN|CHANNELS|DISPATCHER|ALL>_PASSWORD, or made up
# and written to --env-dir as broker-*.env, mode 0640, for the units to read):
#   ingest-admin       declares the topology (`ingest broker declare`, run by install.sh)
#   ingest-channels    publishes to the intake exchange only (case-opens, contact-form
#                      events, acknowledgements' dead letters; with partitions, to the
#                      case-open hash exchange); consumes acknowledgements; declares nothing
#   ingest-dispatcher  consumes case-open (and its partitions), case-events and kb-events
#                      (what the contact form showed and deflected); publishes to the
#                      cases exchange and to the dispatch exchange only (acknowledgement
#                      requests, incident notices, dead letters); declares nothing
#   ingest-all         the all-in-one daemon: what channels and dispatcher may, together
# Neither runtime user can read a team queue or declare, bind or delete anything.
#
# RabbitMQ authorises publishing per exchange, not per routing key, and the default exchange
# reaches every queue by name: no runtime user may write to it. The intake exchange routes
# only to case-open, kb-events and acknowledgements.dead; the dispatch exchange only to
# acknowledgements, incidents and the dead letters of case-open, case-events and kb-events.
set -euo pipefail

VHOST="ingest"
PREFIX=""
ENV_DIR=""
RABBITMQCTL="${RABBITMQCTL:-rabbitmqctl}"

while [ $# -gt 0 ]; do
  case "$1" in
    --vhost) VHOST="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;  # before every name in [queues] (exchanges too), e.g. "prod."
    --user-prefix) USER_PREFIX="$2"; shift 2 ;;  # tests: users of their own
    --env-dir) ENV_DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
USER_PREFIX="${USER_PREFIX:-ingest-}"

ctl() { "$RABBITMQCTL" -q "$@"; }
re() { printf '%s' "$PREFIX$1" | sed 's/[.]/\\./g'; }  # a name as a regex

password_for() {  # password_for ROLE: the given one, or a new random one
  local given="INGEST_RABBITMQ_${1^^}_PASSWORD"
  if [ -n "${!given:-}" ]; then printf '%s' "${!given}"; else
    head -c 24 /dev/urandom | base64 | tr -d '/+=' ; fi
}

ensure_user() {  # ensure_user ROLE -> sets PASSWORD ("" when the user existed and none was given)
  local role="$1" name="$USER_PREFIX$1" given="INGEST_RABBITMQ_${1^^}_PASSWORD"
  PASSWORD=""
  if ctl list_users | cut -f1 | grep -qx "$name"; then
    if [ -n "${!given:-}" ]; then
      PASSWORD="${!given}"
      ctl change_password "$name" "$PASSWORD"
    fi
  else
    PASSWORD="$(password_for "$role")"
    ctl add_user "$name" "$PASSWORD"
  fi
  ctl set_user_tags "$name"
}

write_env() {  # write_env ROLE PASSWORD: an environment file with the role's broker URL
  [ -n "$ENV_DIR" ] && [ -n "$2" ] || return 0
  local file="$ENV_DIR/broker-$1.env"
  umask 027
  printf 'INGEST_BROKER__URL=amqp://%s%s:%s@127.0.0.1:5672/%s\n' \
    "$USER_PREFIX" "$1" "$2" "$VHOST" >"$file"
  chgrp ingest "$file" 2>/dev/null || true
  echo "wrote $file"
}

ctl add_vhost "$VHOST" 2>/dev/null || true   # exists already: fine

case_open="$(re case-open)"
# configure, write, read: regular expressions on queue and exchange names in the vhost.
declare -A CONFIGURE WRITE READ
CONFIGURE[admin]='.*';  WRITE[admin]='.*';  READ[admin]='.*'
CONFIGURE[channels]='^$'
WRITE[channels]="^($(re intake)|$case_open)\$"
READ[channels]="^$(re acknowledgements)\$"
CONFIGURE[dispatcher]='^$'
WRITE[dispatcher]="^($(re cases)|$(re dispatch))\$"
READ[dispatcher]="^($case_open(\\.[0-9]+)?|$(re case-events)|$(re kb-events))\$"
CONFIGURE[all]='^$'
WRITE[all]="^($(re intake)|$case_open|$(re cases)|$(re dispatch))\$"
READ[all]="^($case_open(\\.[0-9]+)?|$(re case-events)|$(re kb-events)|$(re acknowledgements))\$"

for role in admin channels dispatcher all; do
  ensure_user "$role"
  ctl set_permissions -p "$VHOST" "$USER_PREFIX$role" \
    "${CONFIGURE[$role]}" "${WRITE[$role]}" "${READ[$role]}"
  write_env "$role" "$PASSWORD"
done

# Dead letters are kept at least once (the queues say so); bound them, so that a flood of
# poison messages fills a queue rather than the broker's disk (then the source queue holds
# them, and the daemon's metrics show the backlog).
ctl set_policy -p "$VHOST" --apply-to queues ingest-dead-letters "^$(re '').*\\.dead\$" \
  '{"max-length-bytes": 1073741824, "overflow": "reject-publish"}'

echo "vhost $VHOST ready: users ${USER_PREFIX}{admin,channels,dispatcher,all}"
