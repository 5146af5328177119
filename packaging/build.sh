#!/bin/sh
# Builds the Debian packages, and tarballs for a manual install, into dist/:
#
#   packaging/build.sh                 # amd64, arm64 and armhf
#   ARCHES=arm64 packaging/build.sh    # one
#
# armhf is built for ARMv6 with VFP (GOARM=6), Raspberry Pi OS's own armhf
# baseline, so one package runs on every Pi from the Zero and the 1 up;
# arm64 is for 64-bit Raspberry Pi OS (Pi 3, 4, 5). nfpm comes from the Go
# module proxy: nothing else to install.
set -eu
cd "$(dirname "$0")/.."

NFPM_VERSION=v2.45.2
ARCHES=${ARCHES:-amd64 arm64 armhf}
GO=${GO:-go}

# The binary's version: the tag (v1.2.3) or commit, as `gateway --version`
# prints it. The package's: Debian's rules, starting with a digit; an
# untagged build sorts before any release.
BUILD_VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
if [ -z "${VERSION:-}" ]; then
	if tag=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
		VERSION=$(echo "$tag" | sed -e 's/^v//' -e 's/-\([0-9]*\)-g/+\1.g/')
	else
		VERSION=0.0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d).$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	fi
	if ! git diff --quiet HEAD 2>/dev/null; then
		VERSION=$VERSION.dirty
	fi
fi

mkdir -p dist
for arch in $ARCHES; do
	case $arch in
	amd64) goarch=amd64 goarm= ;;
	arm64) goarch=arm64 goarm= ;;
	armhf) goarch=arm goarm=6 ;;
	*) echo "build.sh: unknown architecture $arch (amd64, arm64, armhf)" >&2; exit 2 ;;
	esac
	out=dist/build/$arch
	mkdir -p "$out"
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm $GO build -trimpath \
		-ldflags "-s -w -X main.version=$BUILD_VERSION" -o "$out/fieldbridge-gateway" ./cmd/gateway
	# nfpm expands no variables in file sources: fill in the template.
	sed -e "s|\${ARCH}|$arch|g" -e "s|\${VERSION}|$VERSION|g" -e "s|\${BINARY}|$out/fieldbridge-gateway|g" \
		packaging/nfpm.yaml >"$out/nfpm.yaml"
	$GO run github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION package \
		--config "$out/nfpm.yaml" --packager deb --target dist/ >/dev/null

	# The manual install: binary, unit and example config in one tarball.
	name=fieldbridge_${VERSION}_linux_$arch
	rm -rf "$out/$name"
	mkdir -p "$out/$name"
	cp "$out/fieldbridge-gateway" systemd/fieldbridge.service configs/gateway.example.yaml "$out/$name/"
	tar -C "$out" -czf "dist/$name.tar.gz" --owner=0 --group=0 "$name"
done
ls -l dist/*.deb dist/*.tar.gz
