#!/usr/bin/env bash
# Install Strongroom. Idempotent: running it again changes nothing that is already right.
#
#   ./install.sh --dev         development install into ./.venv (no root needed; as root it also
#                              installs restic from the distribution when missing)
#   ./install.sh               system install (root): see --help
#   ./install.sh --uninstall   remove the service and program, keep data and keys
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=system
for arg in "$@"; do
  case "$arg" in
    --dev) mode=dev ;;
    --uninstall) mode=uninstall ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }

need_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$py"; return 0
    fi
  done
  return 1
}

apt_install() {
  # Install Debian packages only when something is missing; say what to do without apt.
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: please install these with your package manager: ${missing[*]}" >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: not root; please run: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  say "installing ${missing[*]} from the distribution"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

system_packages() {
  local pkgs=()
  command -v restic >/dev/null 2>&1 || pkgs+=(restic)
  command -v tmux >/dev/null 2>&1 || pkgs+=(tmux)
  need_python >/dev/null || pkgs+=(python3 python3-venv)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
}

case "$mode" in
  dev)
    system_packages || say "continuing without system packages; tests that need them will fail"
    py=$(need_python) || { echo "install.sh: Python >= 3.11 is required" >&2; exit 1; }
    if [ ! -x "$here/.venv/bin/python" ]; then
      say "creating $here/.venv"
      "$py" -m venv "$here/.venv"
    fi
    "$here/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    say "installing strongroom (editable) with development tools"
    "$here/.venv/bin/python" -m pip install -q -e "$here[dev]"
    say "done: $here/.venv/bin/strongroom"
    ;;
  system|uninstall)
    echo "install.sh: the system install is not implemented yet; use --dev" >&2
    exit 2
    ;;
esac
