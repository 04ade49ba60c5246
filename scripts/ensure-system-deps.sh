#!/usr/bin/env bash
# Installs the OS packages edgewise drives (stress-ng) when they are missing.
# As root it installs them with apt-get; otherwise it says what to install and fails.
set -euo pipefail
missing=()
command -v stress-ng >/dev/null 2>&1 || missing+=(stress-ng)
if [ "${EDGEWISE_NEED_CHROMIUM:-0}" = "1" ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "edgewise: missing OS packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
echo "edgewise: installed ${missing[*]}"
