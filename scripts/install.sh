#!/usr/bin/env bash
# Builds epsim (release) and installs it, so that it runs from any directory. Usage:
#   scripts/install.sh [BINDIR]        (default: $PREFIX/bin, PREFIX defaulting to ~/.local)
# The binary finds the shipped scenarios and measurements of this checkout by itself
# (it remembers where it was built); move the checkout and give paths explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."
bindir="${1:-${PREFIX:-$HOME/.local}/bin}"
swift build -c release --product epsim
mkdir -p "$bindir"
install -m 755 "$(swift build -c release --show-bin-path)/epsim" "$bindir/epsim"
echo "installed $bindir/epsim"
case ":$PATH:" in *":$bindir:"*) ;; *) echo "note: $bindir is not on PATH; add it, e.g. export PATH=\"$bindir:\$PATH\"" ;; esac
