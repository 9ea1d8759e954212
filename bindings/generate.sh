#!/usr/bin/env bash
# Builds the SDK library (release) and generates its bindings from it with UniFFI's
# generator, pinned to the library's uniffi version:
#   python -> bindings/python/scrip_sdk/ (scrip.py + the library: `pip install bindings/python`)
#   kotlin -> target/bindings/kotlin/uniffi/scrip/scrip.kt (+ the library to ship as JNA's)
#   swift  -> target/bindings/swift/ (scrip.swift, scripFFI.h, scripFFI.modulemap)
# Usage: bindings/generate.sh [python] [kotlin] [swift]   (default: all three)
# Then, where the compilers are installed, `bindings/generate.sh --compile kotlin swift`
# also compiles the generated sources (kotlinc with JNA on the classpath; swiftc).
set -euo pipefail
cd "$(dirname "$0")/.."
compile=0
langs=()
for arg in "$@"; do
  case "$arg" in
    --compile) compile=1 ;;
    python|kotlin|swift) langs+=("$arg") ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
[ ${#langs[@]} -eq 0 ] && langs=(python kotlin swift)
T=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -p scrip-ffi --lib --bin uniffi-bindgen
case "$(uname -s)" in
  Darwin) LIB="$T/release/libscrip_ffi.dylib" ;;
  MINGW*|MSYS*|CYGWIN*) LIB="$T/release/scrip_ffi.dll" ;;
  *) LIB="$T/release/libscrip_ffi.so" ;;
esac
gen() { "$T/release/uniffi-bindgen" generate --library "$LIB" --no-format --language "$1" --out-dir "$2"; }
for lang in "${langs[@]}"; do
  case "$lang" in
    python)
      gen python bindings/python/scrip_sdk
      cp "$LIB" bindings/python/scrip_sdk/
      echo "python: bindings/python/scrip_sdk (pip install bindings/python)" ;;
    kotlin)
      gen kotlin "$T/bindings/kotlin"
      cp "$LIB" "$T/bindings/kotlin/"
      echo "kotlin: $T/bindings/kotlin"
      if [ $compile = 1 ]; then
        if command -v kotlinc >/dev/null && [ -n "${JNA_JAR:-}" ]; then
          kotlinc -cp "$JNA_JAR" "$T/bindings/kotlin/uniffi/scrip/scrip.kt" -d "$T/bindings/kotlin/scrip.jar"
        else
          echo "kotlin: not compiled (needs kotlinc on PATH and JNA_JAR)"
        fi
      fi ;;
    swift)
      gen swift "$T/bindings/swift"
      cp "$LIB" "$T/bindings/swift/"
      echo "swift: $T/bindings/swift"
      if [ $compile = 1 ]; then
        if command -v swiftc >/dev/null; then
          (cd "$T/bindings/swift" && swiftc -module-name scrip -emit-library -o libscrip_swift.so \
            -Xcc -fmodule-map-file=scripFFI.modulemap -L . -lscrip_ffi scrip.swift)
        else
          echo "swift: not compiled (needs swiftc on PATH)"
        fi
      fi ;;
  esac
done
