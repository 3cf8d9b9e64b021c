#!/bin/sh
# Install the Debian packages given as arguments when any is missing.
# Used by `make deps`, `.ci/run` and the README commands.
set -e
missing=
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
case " $missing " in
*" postfix "*)
	# The e2e tests run private Postfix instances; they need Postfix's
	# programs, not a system MTA configured and listening on port 25.
	echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections ;;
esac
$SUDO apt-get install -y -q $missing || { $SUDO apt-get update -q && $SUDO apt-get install -y -q $missing; }
