# Shared by the scripts: PATH for Swift, the repository root, build helpers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/opt/swift/usr/bin"
cd "$ROOT"

# Builds the release binaries, statically linked to the Swift runtime (starts in ~2 ms instead of
# ~7 ms with the shared Foundation libraries; the same binary runs on a machine without Swift).
build_release() {
    swift build -c release --static-swift-stdlib --product propeller "$@" >&2
    swift build -c release --static-swift-stdlib --product propeller-bench "$@" >&2
    echo "$ROOT/.build/release"
}
