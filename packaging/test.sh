#!/bin/sh
# Tests the packages that build.sh left in dist/ (CI runs it after the Go
# tests):
#   - every .deb: metadata, contents, conffile, maintainer scripts, and a
#     binary for its architecture (armhf: built for ARMv6);
#   - the one for this machine, as root: it installs, creates the
#     fieldbridge user (in dialout) and the directories with their
#     permissions, the unit passes `systemd-analyze verify` and its
#     exposure score is at most 2.0, the gateway's user can read the
#     config; an edited config survives a reinstall; remove keeps the user,
#     the state and the config; purge removes them all.
# Installing touches this machine (/usr/bin, /etc/fieldbridge,
# /var/lib/fieldbridge, the fieldbridge user): it runs only as root, and
# only where no fieldbridge package or user exists yet (FIELDBRIDGE_PACKAGE_INSTALL=0 skips it).
set -eu
cd "$(dirname "$0")/.."

fail() { echo "packaging/test.sh: FAIL: $*" >&2; exit 1; }
pass=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }

debs=$(ls dist/fieldbridge_*.deb 2>/dev/null) || fail "no packages in dist/ (run make packages)"
for arch in amd64 arm64 armhf; do
	deb=$(ls dist/fieldbridge_*_"$arch".deb 2>/dev/null | tail -1) || fail "no $arch package in dist/"
	[ "$(dpkg-deb -f "$deb" Package)" = fieldbridge ] || fail "$deb: package name"
	[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || fail "$deb: architecture"
	dpkg-deb -f "$deb" Depends | grep -q adduser || fail "$deb: does not depend on adduser"
	contents=$(dpkg-deb --contents "$deb")
	for f in ./usr/bin/fieldbridge-gateway ./usr/lib/systemd/system/fieldbridge.service ./etc/fieldbridge/gateway.yaml; do
		echo "$contents" | grep -q " $f\$" || fail "$deb: $f missing"
	done
	echo "$contents" | grep -q '^drwxr-x--- .* ./etc/fieldbridge/$' || fail "$deb: /etc/fieldbridge is not 0750"
	echo "$contents" | grep -q '^-rw-r----- .* ./etc/fieldbridge/gateway.yaml$' || fail "$deb: gateway.yaml is not 0640"
	ctrl=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
	for f in conffiles postinst prerm postrm; do
		echo "$ctrl" | grep -q "^./$f\$" || fail "$deb: no $f"
	done
	[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/fieldbridge/gateway.yaml ] || fail "$deb: conffiles"
	bin=$(mktemp)
	dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/fieldbridge-gateway >"$bin"
	chmod 0755 "$bin"
	info=$(go version -m "$bin")
	case $arch in
	amd64) want="GOARCH=amd64" ;;
	arm64) want="GOARCH=arm64" ;;
	armhf) want="GOARM=6" ;;
	esac
	echo "$info" | grep -q "$want" || fail "$deb: binary not built with $want"
	echo "$info" | grep -q "CGO_ENABLED=0" || fail "$deb: binary not static (CGO_ENABLED=0)"
	emu= ran=
	case $arch in
	arm64) emu=qemu-aarch64-static ;;
	armhf) emu=qemu-arm-static ;;
	esac
	if [ -n "$emu" ] && command -v "$emu" >/dev/null; then
		"$emu" "$bin" --version | grep -q "fieldbridge gateway" || fail "$deb: the binary does not run under $emu"
		ran=", runs under $emu"
	fi
	rm -f "$bin"
	ok "$deb: $(du -k "$deb" | cut -f1) KiB, metadata, contents, conffile, scripts, $want$ran"
done

here=$(dpkg --print-architecture)
deb=$(ls dist/fieldbridge_*_"$here".deb 2>/dev/null | tail -1) || { echo "skip install: no package for $here"; exit 0; }
if [ "$(id -u)" != 0 ] || [ "${FIELDBRIDGE_PACKAGE_INSTALL:-1}" = 0 ]; then
	echo "skip install test: needs root"
	echo "$pass passed, 0 failed"
	exit 0
fi
if dpkg -s fieldbridge >/dev/null 2>&1 || getent passwd fieldbridge >/dev/null; then
	fail "a fieldbridge package or user exists on this machine already: not touching it"
fi
trap 'dpkg -P fieldbridge >/dev/null 2>&1 || true' EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "./$deb" >/dev/null 2>&1 || dpkg -i "$deb" >/dev/null || fail "install $deb"
id -nG fieldbridge | grep -qw dialout || fail "fieldbridge is not in dialout"
[ "$(getent passwd fieldbridge | cut -d: -f6,7)" = /var/lib/fieldbridge:/usr/sbin/nologin ] || fail "fieldbridge's home or shell"
[ "$(stat -c '%U:%G %a' /etc/fieldbridge)" = "root:fieldbridge 750" ] || fail "/etc/fieldbridge: $(stat -c '%U:%G %a' /etc/fieldbridge)"
[ "$(stat -c '%U:%G %a' /etc/fieldbridge/gateway.yaml)" = "root:fieldbridge 640" ] || fail "gateway.yaml: $(stat -c '%U:%G %a' /etc/fieldbridge/gateway.yaml)"
[ "$(stat -c '%U:%G %a' /var/lib/fieldbridge)" = "fieldbridge:fieldbridge 750" ] || fail "/var/lib/fieldbridge: $(stat -c '%U:%G %a' /var/lib/fieldbridge)"
ok "installed: user fieldbridge in dialout, /etc/fieldbridge root:fieldbridge 0750, state dir fieldbridge's"

out=$(systemd-analyze verify /usr/lib/systemd/system/fieldbridge.service 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complains: $out"
score=$(systemd-analyze security --offline=yes fieldbridge.service 2>/dev/null | sed -n 's/.*Overall exposure level for fieldbridge.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score from systemd-analyze security"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure score $score is above 2.0"
ok "systemd-analyze verify passes; security exposure $score (at most 2.0)"

runuser -u fieldbridge -- /usr/bin/fieldbridge-gateway check --config /etc/fieldbridge/gateway.yaml >/dev/null ||
	fail "the fieldbridge user cannot check the installed config"
ok "the fieldbridge user reads and checks the installed config"

echo "# edited" >>/etc/fieldbridge/gateway.yaml
dpkg -i "$deb" >/dev/null || fail "reinstall"
tail -1 /etc/fieldbridge/gateway.yaml | grep -q '^# edited$' || fail "the edited config did not survive the reinstall"
ok "an edited config survives a reinstall (conffile)"

echo queued >/var/lib/fieldbridge/state-test
dpkg -r fieldbridge >/dev/null || fail "remove"
[ ! -e /usr/bin/fieldbridge-gateway ] || fail "remove left the binary"
getent passwd fieldbridge >/dev/null || fail "remove deleted the user"
[ -f /var/lib/fieldbridge/state-test ] || fail "remove deleted the state"
[ -f /etc/fieldbridge/gateway.yaml ] || fail "remove deleted the config"
ok "remove keeps the user, the state and the config"

dpkg -P fieldbridge >/dev/null || fail "purge"
! getent passwd fieldbridge >/dev/null || fail "purge left the user"
! getent group fieldbridge >/dev/null || fail "purge left the group"
[ ! -e /var/lib/fieldbridge ] || fail "purge left /var/lib/fieldbridge"
[ ! -e /etc/fieldbridge ] || fail "purge left /etc/fieldbridge"
ok "purge removes the user, the group, the state and the config"
echo "$pass passed, 0 failed"
