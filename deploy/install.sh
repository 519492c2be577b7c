#!/usr/bin/env bash
# Install or upgrade the ingest daemon as a systemd service on a Debian server. Run as root
# from a checkout of the release to install; safe to run again (an upgrade: the venv is
# rebuilt from the new source, settings and secrets are kept, migrations run, running units
# are restarted).
#
#   deploy/install.sh [--prefix /opt/ingest] [--dispatchers N] [--start] [--root DIR]
#
#   --prefix DIR      where the code and its venv go (default /opt/ingest)
#   --dispatchers N   write /etc/ingest/dispatcher-{0..N-1}.env for ingest-dispatcher@.service
#                     (HTTP ports 8090 + i) and set [dispatcher] instances there
#   --start           enable and start ingest-all.service on a first install
#   --root DIR        install into DIR as if it were / (users in DIR/etc/passwd, no systemctl);
#                     for tests and image builds
#
# What it makes: the system user and group `ingest` (no login, home /var/lib/ingest);
# /etc/ingest (0750 root:ingest) with settings.toml, the rules, and secrets.env (0640,
# root:ingest); /var/lib/ingest (0750 ingest:ingest) for the spool, blobs, quarantine and the
# SQLite store; /var/cache/ingest; the units in /etc/systemd/system.
set -euo pipefail

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="/opt/ingest"
ROOT=""
DISPATCHERS=0
START=""
PYTHON="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --root) ROOT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    --dispatchers) DISPATCHERS="$2"; shift 2 ;;
    --start) START=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
ETC="$ROOT/etc/ingest"
STATE="$ROOT/var/lib/ingest"
CACHE="$ROOT/var/cache/ingest"
UNITS="$ROOT/etc/systemd/system"
VENV="$ROOT$PREFIX/venv"
FIRST_INSTALL=""
[ -e "$ETC/settings.toml" ] || FIRST_INSTALL=1

# --- the service user -----------------------------------------------------------------------
prefix_args=()
[ -n "$ROOT" ] && prefix_args=(--prefix "$ROOT")
if ! grep -q '^ingest:' "$ROOT/etc/group" 2>/dev/null; then
  say "creating the system group ingest"
  groupadd "${prefix_args[@]}" --system ingest
fi
if ! grep -q '^ingest:' "$ROOT/etc/passwd" 2>/dev/null; then
  say "creating the system user ingest"
  useradd "${prefix_args[@]}" --system --gid ingest --home-dir /var/lib/ingest \
    --no-create-home --shell /usr/sbin/nologin --comment "omnichannel ingest daemon" ingest
fi
INGEST_UID="$(awk -F: '$1 == "ingest" {print $3}' "$ROOT/etc/passwd")"
INGEST_GID="$(awk -F: '$1 == "ingest" {print $3}' "$ROOT/etc/group")"

# --- folders ----------------------------------------------------------------------------------
install -d -m 0750 -o 0 -g "$INGEST_GID" "$ETC"
install -d -m 0750 -o "$INGEST_UID" -g "$INGEST_GID" "$STATE" "$CACHE"
install -d -m 0755 "$UNITS" "$ROOT$PREFIX"

# --- code and venv ------------------------------------------------------------------------------
say "installing the code into $ROOT$PREFIX"
rm -rf "$ROOT$PREFIX/src.new"
mkdir -p "$ROOT$PREFIX/src.new"
tar -C "$SOURCE" --exclude=.git --exclude=.venv --exclude=var --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude=test-artifacts -cf - . | tar -C "$ROOT$PREFIX/src.new" -xf -
rm -rf "$ROOT$PREFIX/src"
mv "$ROOT$PREFIX/src.new" "$ROOT$PREFIX/src"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade "$ROOT$PREFIX/src"

# --- settings, rules and secrets (never overwritten) ----------------------------------------------
if [ -n "$FIRST_INSTALL" ]; then
  say "writing a starting $ETC/settings.toml"
  sed -e 's|^url = "sqlite:///var/ingest.db"|url = "sqlite:////var/lib/ingest/ingest.db"|' \
      -e 's|^data_dir = "./var"|data_dir = "/var/lib/ingest"|' \
      -e 's|^format = "logfmt"|format = "json"|' \
      -e 's|^stream = "stderr"|stream = "stdout"|' \
      "$SOURCE/settings.toml" >"$ETC/settings.toml"
  if [ -e "$ETC/broker-admin.env" ]; then  # deploy/rabbitmq/setup.sh ran: users that may not declare
    sed -i 's|^declare_topology = true|declare_topology = false|' "$ETC/settings.toml"
  fi
  cp -r "$SOURCE/rules.d" "$ETC/rules.d"
  cp "$SOURCE/rules-tests.toml" "$ETC/rules-tests.toml"
  [ -d "$SOURCE/rules-samples" ] && cp -r "$SOURCE/rules-samples" "$ETC/rules-samples"
fi
if [ ! -e "$ETC/secrets.env" ]; then
  say "writing $ETC/secrets.env (0640 root:ingest): put the secrets there"
  (
    umask 027
    cat >"$ETC/secrets.env" <<EOF
# Secrets of the ingest daemon, read by its systemd units (never put them in settings.toml).
# One VARIABLE=value a line; see README "Settings" for every INGEST_<SECTION>__<KEY>.
INGEST_CHANNELS__CONTACT__CSRF_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
# INGEST_BROKER__URL=amqp://ingest-all:PASSWORD@127.0.0.1:5672/ingest
# INGEST_STORE__URL=postgresql://ingest:PASSWORD@127.0.0.1/ingest
# INGEST_CHANNELS__WEB__API_KEYS=["a-long-random-key"]
# INGEST_CHANNELS__TWILIO__AUTH_TOKEN=
# INGEST_CHANNELS__TELEGRAM__TOKEN=
# INGEST_CHANNELS__TELEGRAM__WEBHOOK_SECRET=
# INGEST_OUTBOUND__MAIL__PASSWORD=
# And the variables your settings name: IMAP accounts' password_env, OAuth2 client_secret_env
# and refresh_token_env (OAuth2 refresh tokens are otherwise kept under the data folder).
# IMAP_SUPPORT_PASSWORD=
EOF
  )
fi
chown -R 0:"$INGEST_GID" "$ETC"
chmod -R g-w,o-rwx "$ETC"
for ((i = 0; i < DISPATCHERS; i++)); do
  file="$ETC/dispatcher-$i.env"
  printf 'INGEST_HTTP__PORT=%d\nINGEST_DISPATCHER__INSTANCES=%d\n' $((8090 + i)) "$DISPATCHERS" \
    >"$file"
  chmod 0640 "$file"
  chown 0:"$INGEST_GID" "$file"
done

# --- units ------------------------------------------------------------------------------------------
say "installing the systemd units into $UNITS"
for unit in ingest-all.service ingest-channels.service ingest-dispatcher@.service \
  ingest-report.service ingest-report.timer; do
  sed "s|@PREFIX@|$PREFIX|g" "$SOURCE/deploy/systemd/$unit" >"$UNITS/$unit"
done
install -d -m 0755 "$UNITS/ingest-.service.d"
install -m 0644 "$SOURCE/deploy/systemd/ingest-.service.d/hardening.conf" \
  "$UNITS/ingest-.service.d/hardening.conf"

# --- the broker's topology and the store's migrations, as the new version wants them --------------
run_ingest() {  # as the ingest user on a real install, with the secrets in the environment
  local env_files=("$ETC/secrets.env")
  [ -e "$ETC/broker-all.env" ] && env_files+=("$ETC/broker-all.env")
  (
    # systemd's EnvironmentFile= format, read literally (a JSON list keeps its quotes).
    for file in "${env_files[@]}"; do
      while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in ''|'#'*) continue ;; esac
        export -- "$line"
      done <"$file"
    done
    if [ -n "$ROOT" ]; then
      # Paths in the settings are the server's: point the SQLite store into the root.
      store="$("$VENV/bin/python" - "$ETC/settings.toml" <<'PY'
import sys
from ingest.settings import load_settings
print(load_settings(__import__("pathlib").Path(sys.argv[1])).store.url)
PY
)"
      case "$store" in sqlite:///*) export INGEST_STORE__URL="sqlite:///$ROOT/${store#sqlite:///}" ;; esac
      "$VENV/bin/ingest" "$@"
    else
      runuser -u ingest -- "$VENV/bin/ingest" "$@"
    fi
  )
}
if [ -e "$ETC/broker-admin.env" ]; then
  say "declaring the broker topology as ingest-admin"
  admin_url="$(sed -n 's/^INGEST_BROKER__URL=//p' "$ETC/broker-admin.env")"
  INGEST_BROKER_ADMIN_URL="$admin_url" run_ingest broker declare --settings "$ETC/settings.toml"
fi
say "migrating the store"
run_ingest db upgrade --settings "$ETC/settings.toml"

# --- systemd ------------------------------------------------------------------------------------------
if [ -n "$ROOT" ] || [ ! -d /run/systemd/system ]; then
  say "installed into ${ROOT:-/}; systemd is not running here, so nothing was (re)started"
  exit 0
fi
systemctl daemon-reload
if [ -n "$FIRST_INSTALL" ]; then
  if [ -n "$START" ]; then
    systemctl enable --now ingest-all.service
  else
    say "next: edit /etc/ingest/settings.toml and secrets.env, then"
    say "      systemctl enable --now ingest-all.service   (or ingest-channels + ingest-dispatcher@N)"
    say "      systemctl enable --now ingest-report.timer  (the monthly report, if you want it)"
  fi
else
  say "restarting the running ingest units"
  systemctl try-restart 'ingest-all.service' 'ingest-channels.service' 'ingest-dispatcher@*.service'
fi
