# Shared by run.sh and test.sh: install what a fresh Debian machine lacks, start RabbitMQ.
# Sourced, not run. Needs root or sudo only when something must be installed or started.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
APT_UPDATED=""

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  say "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_venv() {  # ensure_venv EXTRAS  (e.g. "" or "[test]")
  local extras="${1:-}"
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11 or newer is needed as python3" >&2
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    say "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed"
  local want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)$extras"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the project into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT$extras"
    echo "$want" >"$stamp"
  fi
}

port_open() {  # port_open HOST PORT
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

ensure_rabbitmq() {
  if port_open 127.0.0.1 5672; then return 0; fi
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached
  for _ in $(seq 1 120); do
    port_open 127.0.0.1 5672 && return 0
    sleep 1
  done
  echo "RabbitMQ did not start listening on 127.0.0.1:5672 within 120 s" >&2
  exit 1
}

ensure_hash_exchange() {  # case-open partitions ([queues] case_open_partitions) need it
  grep -qs rabbitmq_consistent_hash_exchange /etc/rabbitmq/enabled_plugins && return 0
  say "enabling RabbitMQ's consistent-hash exchange plugin"
  as_root rabbitmq-plugins enable rabbitmq_consistent_hash_exchange >/dev/null
}

ensure_dovecot() {  # the tests run their own Dovecot IMAP servers on loopback ports
  [ -x /usr/sbin/dovecot ] || apt_install dovecot-imapd
}

ensure_chromium() {  # the contact-form tests drive Debian's Chromium with Playwright
  [ -x /usr/bin/chromium ] || apt_install chromium
}

ensure_postgresql() {  # the tests' second store: PostgreSQL on 127.0.0.1:5432, user postgres, trust
  if port_open 127.0.0.1 5432; then return 0; fi
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 60); do
    port_open 127.0.0.1 5432 && return 0
    sleep 1
  done
  echo "PostgreSQL did not start listening on 127.0.0.1:5432 within 60 s" >&2
  exit 1
}

ensure_deploy_tools() {  # the deploy tests run Postfix, nginx and promtool of their own
  local missing=()
  dpkg -s postfix >/dev/null 2>&1 || missing+=(postfix)
  command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
  # Wanted for their programs only: keep the packages' own services from starting (a
  # policy-rc.d that refuses), unless the machine already has a policy of its own.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=1
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d'
  fi
  say "installing ${missing[*]} (for the deploy tests; their services are not started)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  [ -n "$policy" ] && as_root rm -f /usr/sbin/policy-rc.d
  return 0
}
