# Sourced by the install scripts: `apt_install PKG...` installs Debian packages with no prompt,
# no recommends and no service started (a policy-rc.d guard where the machine has none: there is
# no systemd here, and the tests start their own servers). Uses sudo when not root.
apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo="" policy=/usr/sbin/policy-rc.d created=0
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "$(basename "$0"): installing $*" >&2
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created=1
  fi
  local rc=0
  $sudo apt-get update -qq || rc=$?
  [ $rc != 0 ] || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null || rc=$?
  [ $created = 1 ] && $sudo rm -f "$policy"
  return $rc
}
