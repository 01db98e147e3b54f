#!/usr/bin/env bash
# Install size of modelmix: the core (`pip install modelmix`), everything (`[all]`), and a
# reference build (default: 035d7e5, before the extras split), each in a fresh venv.
# Usage: benchmarks/install/measure.sh [REF]   -> prints one line per install
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ref=${1:-035d7e5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measure() {  # name, pip install arguments...
  local name=$1; shift
  python3 -m venv "$work/$name"
  "$work/$name/bin/python" -m pip -q --disable-pip-version-check install "$@" >/dev/null
  local site
  site=$("$work/$name/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$name: $(du -sm "$site" | cut -f1) MB in site-packages," \
       "$("$work/$name/bin/python" -m pip list 2>/dev/null | tail -n +3 | wc -l) packages"
}
git -C "$root" archive --format=tar --prefix=ref/ "$ref" | tar -x -C "$work"
measure "ref-$ref" "$work/ref"
measure core "$root"
measure all "$root[all]"
