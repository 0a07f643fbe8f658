#!/bin/sh
# docker-entrypoint.sh of the redis:8.6.3-alpine image made here (see Dockerfile): what the
# upstream entrypoint does, without its permission repairs of mounted configs:
#   - `-x ...` or `x.conf ...` run as `redis-server -x ...`;
#   - started as root with the capabilities for it, it hands a data folder holding only Redis' files
#     to redis and runs itself again as redis:redis with no capabilities (SKIP_DROP_PRIVS=1: root);
#   - umask 0022 becomes 0077;
#   - redis-server (not sentinel) loads every module in /usr/local/lib/redis/modules, and runs with
#     protected mode off unless told otherwise: upstream builds its server with that default, so
#     clients in other containers can connect. It goes after the config file, before the other
#     arguments, so a config file or an argument can still turn it on.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi

server=$(readlink -f /usr/local/bin/redis-server)
cmd=$(command -v "$1" 2>/dev/null || :)
is_server= is_sentinel=
if [ -n "$cmd" ] && [ "$(readlink -f "$cmd")" = "$server" ]; then
  is_server=1
  case "$(basename "$1")" in redis-sentinel) is_sentinel=1 ;; esac
  for arg in "$@"; do
    if [ "$arg" = --sentinel ]; then is_sentinel=1; fi
  done
fi

has_cap() { setpriv -d | grep -q "Capability bounding set:.*\b$1\b"; }
if [ -n "$is_server" ] && [ -z "${SKIP_DROP_PRIVS:-}" ] && [ "$(id -u)" = 0 ] && has_cap setuid && has_cap setgid; then
  # Only a data folder as Redis leaves it (dump files, appendonlydir) is handed over.
  if [ -z "$(find . -mindepth 1 -maxdepth 1 \! -name '*.rdb' \! \( -type d -name appendonlydir \) -print -quit)" ]; then
    find . \! -user redis -exec chown redis '{}' +
  fi
  exec setpriv --reuid redis --regid redis --clear-groups --nnp \
    --inh-caps=-all --ambient-caps=-all --bounding-set=-all "$0" "$@"
fi

if [ "$(umask)" = 0022 ]; then
  umask 0077
fi

if [ -n "$is_server" ] && [ -z "$is_sentinel" ]; then
  echo "Starting Redis Server"
  bin=$1
  shift
  if [ $# -gt 0 ] && { [ "$1" = - ] || [ "${1#-}" = "$1" ]; }; then # a config file first
    conf=$1
    shift
    set -- "$bin" "$conf" --protected-mode no "$@"
  else
    case "${1:-}" in
      -v | --version | -h | --help | --test-memory | --check-system) set -- "$bin" "$@" ;;
      *) set -- "$bin" --protected-mode no "$@" ;;
    esac
  fi
  for module in /usr/local/lib/redis/modules/*.so; do
    if [ -f "$module" ] && [ -s "$module" ] && [ -r "$module" ] && [ -x "$module" ]; then
      set -- "$@" --loadmodule "$module"
    fi
  done
fi

exec "$@"
