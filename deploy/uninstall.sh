#!/usr/bin/env bash
# Removes the appliance service installed by deploy/install.sh. Run as root:
#   sudo deploy/uninstall.sh            stop and remove the service, its venv and unit;
#                                       keep /etc/appliance (config, API key) and state
#   sudo deploy/uninstall.sh --purge    also remove /etc/appliance, /var/lib/appliance
#                                       and the `appliance` system user
set -euo pipefail

purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: deploy/uninstall.sh [--purge]" >&2; exit 64 ;;
esac
[ "$(id -u)" = 0 ] || { echo "deploy/uninstall.sh: run as root: sudo $0 $*" >&2; exit 1; }

unit=appliance.service
if [ -d /run/systemd/system ]; then
  systemctl disable --now "$unit" 2>/dev/null || true
fi
rm -f "/etc/systemd/system/$unit"
rm -rf "/etc/systemd/system/$unit.d" /opt/appliance
[ -d /run/systemd/system ] && systemctl daemon-reload && systemctl reset-failed "$unit" 2>/dev/null || true

if [ "$purge" = 1 ]; then
  rm -rf /etc/appliance /var/lib/appliance /var/lib/private/appliance
  getent passwd appliance >/dev/null && userdel appliance
  getent group appliance >/dev/null && groupdel appliance
  echo "deploy/uninstall.sh: removed the service, its config, key, state and user" >&2
else
  echo "deploy/uninstall.sh: removed the service; kept /etc/appliance (config, key) and" \
    "/var/lib/appliance (use --purge to remove them)" >&2
fi
