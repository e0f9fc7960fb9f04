# shellcheck shell=bash
# lib.sh holds what the project's scripts share; they source it.

# need_apt_package CMD PACKAGE... installs Debian's PACKAGEs unless CMD is on the PATH.
need_apt_package() {
  local cmd=$1
  shift
  if command -v "$cmd" >/dev/null 2>&1; then
    return
  fi
  echo "== installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "$@" >/dev/null
}
