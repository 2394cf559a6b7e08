#!/usr/bin/env bash
# The management API with the key from key_file.json (regenerated when expired).
#   scripts/manage.sh register ARCHIVE.mar [--workers N] | unregister NAME [VERSION] | scale NAME N [--version V]
#     | set-default NAME VERSION | list | describe NAME [VERSION|all]
#   scripts/manage.sh header KIND   path of a 0600 file for curl -H @FILE (KIND: inference or management)
#   scripts/manage.sh key KIND      the key itself, for programs (never put it on a command line)
#   scripts/manage.sh address API   the config's address of an API (inference, management, metrics)
set -euo pipefail
source "$(dirname "$0")/_python.sh"
case "${1:-}" in
  register|unregister|scale|set-default|list|describe|key|header|address) exec "$PY" -m serving.tsctl "$@" ;;
  *) echo "usage: $0 register ARCHIVE.mar [--workers N] | unregister NAME [VERSION] | scale NAME N [--version V] | set-default NAME VERSION | list | describe NAME [VERSION|all] | header|key inference|management | address inference|management|metrics" >&2; exit 2 ;;
esac
