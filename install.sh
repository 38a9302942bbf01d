#!/usr/bin/env bash
# Install Strongroom. Idempotent: running it again changes nothing that is already right.
#
#   ./install.sh --dev             development install into ./.venv (no root needed; as root it also
#                                  installs restic from the distribution when missing)
#   ./install.sh                   system install (root): user `strongroom`, /opt/strongroom/venv,
#                                  restic, the systemd unit, /etc/strongroom/{strongroom.toml,keys/};
#                                  enables and starts the service where systemd runs
#   ./install.sh --uninstall       remove the service and the program; keep data, settings and keys
#   ./install.sh --root DIR ...    system install or uninstall into DIR as if it were / (also: DESTDIR=DIR);
#                                  packages are not installed and systemd is not touched. The virtualenv's
#                                  scripts name DIR/opt/... (virtualenvs are not relocatable): for tests.
#
# Environment: STRONGROOM_INSTALL_SKIP_USER=1 skips creating the `strongroom` user (files are then
# owned by root); STRONGROOM_INSTALL_PYTHON picks the Python (3.11 or newer) for the virtualenv.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=system
root=${DESTDIR:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) mode=dev ;;
    --uninstall) mode=uninstall ;;
    --root) [ $# -ge 2 ] || { echo "install.sh: --root needs a directory" >&2; exit 2; }; root=$2; shift ;;
    --root=*) root=${1#--root=} ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '==> %s\n' "$*" >&2; }

need_python() {
  if [ -n "${STRONGROOM_INSTALL_PYTHON:-}" ]; then
    echo "$STRONGROOM_INSTALL_PYTHON"; return 0
  fi
  for py in python3.13 python3.12 python3.11 python3; do
    # stderr hidden: pyenv shims exist for versions that are not selected and complain when run.
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

manual_install_hint() {  # manual_install_hint DEBIAN-PACKAGE...: the same software by other names
  local dnf=() zypper=() pacman=() apk=() pkg
  for pkg in "$@"; do
    case "$pkg" in
      python3) dnf+=(python3); zypper+=(python311); pacman+=(python); apk+=(python3) ;;
      python3-venv) ;;  # part of Python itself outside Debian
      *) dnf+=("$pkg"); zypper+=("$pkg"); pacman+=("$pkg"); apk+=("$pkg") ;;
    esac
  done
  {
    echo "install.sh: this system has no apt-get. Please install by hand, then run install.sh again:"
    echo "  Debian names:         $*"
    echo "  Fedora, RHEL (EPEL):  dnf install ${dnf[*]}"
    echo "  openSUSE:             zypper install ${zypper[*]}"
    echo "  Arch Linux:           pacman -S ${pacman[*]}"
    echo "  Alpine:               apk add ${apk[*]}"
    case " $* " in
      *" restic "*) echo "  restic (0.14 or newer) is also a single binary: https://github.com/restic/restic/releases" ;;
    esac
    case " $* " in
      *" python3 "*) echo "  Python must be 3.11 or newer, with its venv module." ;;
    esac
  } >&2
}

apt_install() {
  # Install Debian packages only when something is missing; say what to do without apt.
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    manual_install_hint "${missing[*]}"
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

# --- system install -----------------------------------------------------------------------------

prefix=/opt/strongroom
unit_name=strongroom.service
root=${root%/}
if [ -n "$root" ]; then
  root=$(mkdir -p "$root" && cd "$root" && pwd)
  [ "$root" = / ] && root=
fi
venv=$root$prefix/venv
etc=$root/etc/strongroom
unit_path=$root/etc/systemd/system/$unit_name
owner_group=root

as_root() {
  [ "$(id -u)" -eq 0 ]
}

systemd_running() {
  # Only on the real root, and only where systemd is PID 1 (not in most containers).
  [ -z "$root" ] && [ -d /run/systemd/system ]
}

put_dir() {  # put_dir MODE OWNER:GROUP DIR: create or fix a directory's mode and owner
  local mode=$1 owner=$2 dir=$3
  if [ ! -d "$dir" ]; then
    say "creating $dir"
    mkdir -p "$dir"
  fi
  chmod "$mode" "$dir"
  if as_root; then chown "$owner" "$dir"; fi
}

# Functions report changes in variables, not exit statuses: a function called on the left of `&&`
# runs with `set -e` disabled, so a failure inside it would go unnoticed.
wrote=no
put_file() {  # put_file MODE SOURCE TARGET: copy when the content differs; sets wrote=yes|no
  local mode=$1 source=$2 target=$3
  wrote=no
  if [ -f "$target" ] && cmp -s "$source" "$target"; then
    chmod "$mode" "$target"
    return 0
  fi
  say "writing $target"
  mkdir -p "$(dirname "$target")"
  install -m "$mode" "$source" "$target"
  wrote=yes
}

source_fingerprint() {
  # What the installed package was built from: reinstall only when the source changed.
  (cd "$here" && find pyproject.toml appliance tui sandbox -type f \
      -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 2>/dev/null \
    | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

ensure_user() {
  if [ "${STRONGROOM_INSTALL_SKIP_USER:-}" = 1 ]; then
    say "not creating the strongroom user (STRONGROOM_INSTALL_SKIP_USER=1): files stay owned by root"
    return 0
  fi
  if [ -n "$root" ]; then
    echo "install.sh: with --root, set STRONGROOM_INSTALL_SKIP_USER=1 (useradd needs the real system)" >&2
    exit 2
  fi
  if ! getent passwd strongroom >/dev/null; then
    say "adding the system user strongroom"
    # The home is the state directory systemd manages (StateDirectory=strongroom); no login shell.
    useradd --system --user-group --home-dir /var/lib/strongroom --no-create-home \
      --shell /usr/sbin/nologin --comment "Strongroom backup appliance" strongroom
  fi
  owner_group=strongroom
}

program_changed=no
install_program() {  # sets program_changed=yes|no
  local py fingerprint stamp=$root$prefix/.source-fingerprint
  program_changed=no
  py=$(need_python) || { echo "install.sh: Python >= 3.11 is required" >&2; exit 1; }
  fingerprint=$(source_fingerprint)
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] \
      && "$venv/bin/python" -I -B -c 'import appliance' 2>/dev/null; then
    say "strongroom in $venv is up to date"
    return 0
  fi
  put_dir 0755 root:root "$root$prefix"
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$py" -m venv "$venv"
  fi
  say "installing strongroom into $venv"
  # The venv's own pip suffices for a local project; .pyc files are compiled now because the service
  # cannot write them later (ProtectSystem=strict makes /opt read-only).
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$here"
  printf '%s\n' "$fingerprint" > "$stamp"
  program_changed=yes
}

unit_changed=no
install_files() {  # sets unit_changed=yes|no
  put_dir 0755 root:root "$root$prefix/docs"
  put_file 0644 "$here/docs/operations.md" "$root$prefix/docs/operations.md"
  # Always current, so an upgrade shows new settings without touching the live file.
  put_file 0644 "$here/config/strongroom.example.toml" "$root$prefix/strongroom.example.toml"

  # Settings: readable by the service's group, never overwritten.
  put_dir 0750 "root:$owner_group" "$etc"
  if [ ! -e "$etc/strongroom.toml" ]; then
    say "writing $etc/strongroom.toml from config/strongroom.example.toml"
    install -m 0640 "$here/config/strongroom.example.toml" "$etc/strongroom.toml"
  else
    say "keeping the existing $etc/strongroom.toml"
  fi
  if as_root; then chown "root:$owner_group" "$etc/strongroom.toml"; fi
  # Keys the service receives as systemd credentials (LoadCredential=): root only, since systemd
  # reads them as root. The unit refuses to start when a named credential file is missing.
  put_dir 0700 root:root "$etc/keys"
  if [ ! -e "$etc/keys/xero-client-secret" ]; then
    say "creating an empty $etc/keys/xero-client-secret (write your Xero app's client secret into it)"
    install -m 0600 /dev/null "$etc/keys/xero-client-secret"
  fi

  # State and cache: systemd creates them too (StateDirectory=, CacheDirectory=); made here so the
  # CLI works before the first start and where systemd does not run.
  put_dir 0700 "$owner_group:$owner_group" "$root/var/lib/strongroom"
  put_dir 0700 "$owner_group:$owner_group" "$root/var/cache/strongroom"

  put_dir 0755 root:root "$root/etc/systemd/system"
  put_file 0644 "$here/systemd/$unit_name" "$unit_path"
  unit_changed=$wrote
  put_dir 0755 root:root "$root/usr/local/bin"
  if [ "$(readlink "$root/usr/local/bin/strongroom" 2>/dev/null)" != "$prefix/venv/bin/strongroom" ]; then
    say "linking /usr/local/bin/strongroom"
    ln -sfn "$prefix/venv/bin/strongroom" "$root/usr/local/bin/strongroom"
  fi
}

system_install() {
  if [ -z "$root" ] && ! as_root; then
    echo "install.sh: the system install needs root (sudo ./install.sh), or use --dev" >&2
    exit 2
  fi
  if [ -z "$root" ]; then
    local pkgs=()
    command -v restic >/dev/null 2>&1 || pkgs+=(restic)
    need_python >/dev/null || pkgs+=(python3 python3-venv)
    [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}" || exit 1
  elif ! command -v restic >/dev/null 2>&1; then
    say "restic is not installed on this machine; the target system needs it (apt-get install restic)"
  fi
  ensure_user
  install_program
  install_files
  if systemd_running; then
    if [ "$unit_changed" = yes ]; then systemctl daemon-reload; fi
    systemctl enable --now "$unit_name"
    if [ "$program_changed" = yes ] || [ "$unit_changed" = yes ]; then
      systemctl try-restart "$unit_name"
    fi
    say "done: systemctl status strongroom"
  else
    say "systemd is not running here: the unit is installed but not enabled; start it with"
    say "  systemctl daemon-reload && systemctl enable --now strongroom   (on the target system)"
  fi
}

system_uninstall() {
  if [ -z "$root" ] && ! as_root; then
    echo "install.sh: --uninstall needs root" >&2
    exit 2
  fi
  if systemd_running && [ -f "$unit_path" ]; then
    systemctl disable --now "$unit_name" || true
  fi
  if [ -f "$unit_path" ]; then
    say "removing $unit_path"
    rm -f "$unit_path"
    if systemd_running; then systemctl daemon-reload; fi
  fi
  if [ -L "$root/usr/local/bin/strongroom" ]; then
    rm -f "$root/usr/local/bin/strongroom"
  fi
  if [ -d "$root$prefix" ]; then
    say "removing $root$prefix"
    rm -rf "$root$prefix"
  fi
  if [ -d "$root/var/cache/strongroom" ]; then
    say "removing $root/var/cache/strongroom (caches only)"
    rm -rf "$root/var/cache/strongroom"
  fi
  say "kept: $root/var/lib/strongroom (data), $etc (settings and keys), the strongroom user"
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
  system) system_install ;;
  uninstall) system_uninstall ;;
esac
