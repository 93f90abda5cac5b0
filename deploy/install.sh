#!/usr/bin/env bash
# Installs or updates appliance as a systemd service on a Raspberry Pi (Raspberry Pi OS
# bookworm, 64-bit or 32-bit) or any Debian 12 machine (amd64, arm64, armhf). Run it as
# root on the device, e.g. over SSH from a checkout of this repository:
#   sudo deploy/install.sh                        install or update, then (re)start
#   sudo deploy/install.sh --key-file FILE        ... and store the Gemini API key from FILE
#   printf %s "$KEY" | sudo deploy/install.sh --key-stdin
# Options:
#   --key-file FILE | --key-stdin   the API key, stored as /etc/appliance/gemini-api-key (0600)
#   --wheels DIR    install from wheels in DIR, no package index (repeatable); no compilers
#   --no-start      install and enable, but do not (re)start the service
#   --no-apt        do not install apt packages (they must already be there)
#   --remove-build-packages   afterwards, purge the compilers and headers this run installed
#                   (an update that needs them installs them again)
# numpy, cryptography and systemd-python come from apt (the venv sees them through
# --system-site-packages), so pip compiles only pyalsaaudio (and, on 32-bit ARM,
# pymicro-features). Not for armv6 boards (Pi Zero W, Pi 1): see the check below.
# It is idempotent and also the way to update: apt packages only when missing, the venv
# only when absent, the package always (re)installed, the unit replaced, the service
# restarted. A user's /etc/appliance/config.toml is never overwritten.
set -euo pipefail

prefix=/opt/appliance
venv=$prefix/venv
etc_dir=/etc/appliance
unit=appliance.service
user=appliance
# What the service needs at run time. The test rig reads this line (keep it one line).
# numpy, cryptography and systemd-python are compiled code that PyPI has no wheels of for
# 32-bit ARM (and systemd-python for nothing): Debian's builds (1.24, 38, 235) meet our
# floors, and the venv sees them through --system-site-packages.
runtime_packages=(python3 python3-venv libasound2 alsa-utils procps python3-numpy python3-cryptography python3-systemd)
# pyalsaaudio has no wheels anywhere: pip compiles it.
build_packages=(python3-dev gcc pkg-config libasound2-dev)
# On 32-bit ARM, pymicro-features (the wake word's front end) has no wheel either: C++.
build_packages_armhf=(g++)
# Only Raspberry Pi OS has these (GPIO, SPI LEDs, camera); the venv sees them through
# --system-site-packages. Installed when apt knows them, skipped elsewhere.
pi_packages=(python3-lgpio python3-spidev python3-picamera2)
# Device groups the unit names in SupplementaryGroups=; a unit whose group does not
# exist fails to start, so missing ones (no GPIO/SPI on a PC) are created empty.
device_groups=(audio gpio spi video)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
key_file="" key_stdin=0 start=1 apt=1 wheels=() remove_build=0
started_at=$(date +%s)

# Exit codes follow sysexits: 64 usage, 69 unsupported here, 77 not root, 1 anything else.
die() { echo "deploy/install.sh: $*" >&2; exit "${code:-1}"; }
say() { echo "deploy/install.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --key-file) key_file=${2:?--key-file needs a file}; shift 2 ;;
    --key-stdin) key_stdin=1; shift ;;
    --wheels) wheels+=("${2:?--wheels needs a directory}"); shift 2 ;;
    --no-start) start=0; shift ;;
    --no-apt) apt=0; shift ;;
    --remove-build-packages) remove_build=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) code=64 die "unknown option $1 (see --help)" ;;
  esac
done

# The architecture. dpkg's is the userland's; uname's is the CPU's (a Pi 4 or 5 on
# 32-bit Raspberry Pi OS runs a 64-bit kernel under an armhf userland).
machine=$(uname -m)
arch=$(dpkg --print-architecture 2>/dev/null || echo unknown)
if [ "$machine" = armv6l ] || [ "$arch" = armel ]; then
  code=69 die "this is an ARMv6 board (Pi Zero W, Pi 1: $machine, $arch), which appliance does not
  support. PyPI builds 32-bit ARM wheels for ARMv7 and up only, so pip would have to compile
  pydantic-core (Rust, needed by the Gemini client), the wake word and the voice gate here,
  with a Rust toolchain, 512 MB of memory and one ARM11 core, which would then have to run
  them all beside a TLS audio stream. Use a Pi Zero 2 W, 3, 4 or 5 (Raspberry Pi OS
  bookworm, 64-bit preferred)."
fi
case "$arch" in
  amd64 | arm64 | armhf) ;;
  *) say "warning: untested architecture $arch ($machine); carrying on" ;;
esac
# pip's environment markers read uname: under an armhf userland on a 64-bit kernel, make
# them see the 32-bit machine the packages are for (armv8l), not aarch64.
as_userland=()
if [ "$arch" = armhf ] && [ "$machine" = aarch64 ]; then as_userland=(setarch linux32); fi

[ "$(id -u)" = 0 ] || code=77 die "run as root: sudo $0 $*"
[ -f "$here/pyproject.toml" ] || code=66 die "run from a checkout of appliance ($here has no pyproject.toml)"
[ -f "$here/systemd/$unit" ] || code=66 die "missing $here/systemd/$unit"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_apt() {
  local missing=() p
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
      code=69 die "could not install ${missing[*]}; install them with apt-get and run again"
  fi
}

# Build packages this run installed (so --remove-build-packages leaves others' alone).
added_build=()
if [ "$apt" = 1 ]; then
  wanted=("${runtime_packages[@]}")
  if [ ${#wheels[@]} -eq 0 ]; then
    build=("${build_packages[@]}")
    [ "$arch" = armhf ] && build+=("${build_packages_armhf[@]}")
    for p in "${build[@]}"; do installed "$p" || added_build+=("$p"); done
    wanted+=("${build[@]}")
  fi
  for p in "${pi_packages[@]}"; do
    installed "$p" || { apt-cache show "$p" >/dev/null 2>&1 && wanted+=("$p"); } || true
  done
  install_apt "${wanted[@]}"
fi

# The service's own system user; its group is the default group of the control socket.
for g in "${device_groups[@]}"; do
  getent group "$g" >/dev/null || { say "creating group $g"; groupadd --system "$g"; }
done
if ! getent passwd "$user" >/dev/null; then
  say "creating system user $user"
  useradd --system --user-group --home-dir /var/lib/appliance --no-create-home \
    --shell /usr/sbin/nologin --comment "appliance voice assistant" "$user"
fi
# Whoever ran sudo may use `appliance status|talk|...` (after logging in again).
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && ! id -nG "$SUDO_USER" | grep -qw "$user"; then
  usermod -aG "$user" "$SUDO_USER" && say "added $SUDO_USER to group $user (log in again to use it)"
fi

# The venv sees apt's python3-picamera2 / python3-lgpio through --system-site-packages.
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  mkdir -p "$prefix"
  "${as_userland[@]}" python3 -m venv --system-site-packages "$venv"
fi
pip=("${as_userland[@]}" "$venv/bin/python" -m pip)
if [ ${#wheels[@]} -gt 0 ]; then
  links=()
  for w in "${wheels[@]}"; do links+=(--find-links "$w"); done
  "${pip[@]}" install -q --no-index "${links[@]}" --upgrade --force-reinstall --no-deps appliance
  "${pip[@]}" install -q --no-index "${links[@]}" appliance
else
  say "installing appliance and its Python packages into $venv (pip compiles pyalsaaudio)"
  "${pip[@]}" install -q --upgrade pip
  # --prefer-binary: an older wheel over compiling a newer sdist (on 32-bit ARM,
  # pymicro-vad 1.0.2 instead of building 2.x); --upgrade touches only appliance itself,
  # so apt's numpy, cryptography and systemd-python stay what the venv uses.
  "${pip[@]}" install -q --prefer-binary --upgrade "$here"
fi
if [ "$remove_build" = 1 ] && [ ${#added_build[@]} -gt 0 ]; then
  say "removing the build packages this run installed: ${added_build[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --autoremove "${added_build[@]}" >/dev/null
fi

# Config: the user's file is theirs; only a missing one is created.
install -d -m 0755 "$etc_dir"
if [ ! -e "$etc_dir/config.toml" ]; then
  if [ -f "$here/config.toml" ]; then
    install -m 0640 -o root -g "$user" "$here/config.toml" "$etc_dir/config.toml"
  else
    printf '%s\n' '# appliance configuration; every option and its default: see config.toml in' \
      '# the appliance repository. An empty file means all defaults.' >"$etc_dir/config.toml"
    chown root:"$user" "$etc_dir/config.toml"; chmod 0640 "$etc_dir/config.toml"
  fi
  say "wrote $etc_dir/config.toml"
fi

# The key: root-only; systemd hands it to the service as a credential (LoadCredential=).
if [ -n "$key_file" ] || [ "$key_stdin" = 1 ]; then
  tmp=$(umask 077 && mktemp "$etc_dir/.gemini-api-key.XXXXXX")
  if [ "$key_stdin" = 1 ]; then cat >"$tmp"; else cat -- "$key_file" >"$tmp"; fi
  if [ ! -s "$tmp" ]; then rm -f "$tmp"; die "the API key given is empty"; fi
  chown root:root "$tmp"; chmod 0600 "$tmp"
  mv -f "$tmp" "$etc_dir/gemini-api-key"
  say "stored the API key in $etc_dir/gemini-api-key (mode 0600)"
fi
[ -e "$etc_dir/gemini-api-key" ] || say "no API key yet: run again with --key-file FILE or --key-stdin"

install -m 0644 "$here/systemd/$unit" "/etc/systemd/system/$unit"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --quiet "$unit"
  if [ "$start" = 1 ]; then
    systemctl restart "$unit"
    say "started; see: systemctl status $unit, journalctl -u $unit"
  fi
else
  say "systemd is not running here: enable the unit later with systemctl enable --now $unit"
fi
say "done in $(($(date +%s) - started_at)) s; $venv takes $(du -sm "$venv" | cut -f1) MB"
