#!/usr/bin/env bash
# System packages forkstage's local cloud and tests need (Debian): PostgreSQL server binaries,
# curl (the rendered GitLab pipeline's merge-request note, run by tests/test_ci_render.py) and
# e2fsprogs (tests/backend/test_state_disk.py's small ext4 disk where tmpfs cannot be mounted).
set -euo pipefail
wanted=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || wanted+=(postgresql)
command -v curl >/dev/null 2>&1 || wanted+=(curl)
command -v mkfs.ext4 >/dev/null 2>&1 || wanted+=(e2fsprogs)
if [ "${#wanted[@]}" = 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${wanted[@]}" >/dev/null
