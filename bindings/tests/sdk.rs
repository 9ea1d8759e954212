//! The SDK as vendors get it, from `cargo test`: the Python package generated from this
//! build's library, `pip install`ed into a virtual environment, and its pytest suite run
//! against a real `scrip-server` on loopback; the Kotlin and Swift sources generated from
//! the same library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>`: where cargo put the generator, the library and the server.
fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn library() -> PathBuf {
    let name = if cfg!(target_os = "macos") {
        "libscrip_ffi.dylib"
    } else if cfg!(windows) {
        "scrip_ffi.dll"
    } else {
        "libscrip_ffi.so"
    };
    // `cargo test` builds the cdylib into `deps/` (it uplifts only binaries); a
    // `cargo build` also copies it up one level.
    let built = [
        profile_dir().join("deps").join(name),
        profile_dir().join(name),
    ];
    built
        .iter()
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no SDK library in {}", profile_dir().display()))
        .clone()
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

fn generate(language: &str, out: &Path) {
    run(Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .args([
            "generate",
            "--no-format",
            "--language",
            language,
            "--library",
        ])
        .arg(library())
        .arg("--out-dir")
        .arg(out));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        // Whatever a local `generate.sh` or pytest left in the source tree stays there.
        let skip = ["build", "__pycache__", ".pytest_cache"];
        if skip.iter().any(|s| name == *s) || name.to_string_lossy().ends_with(".egg-info") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// A virtual environment under the target directory with pytest (and `wheel`, which
/// setuptools needs to build the package): made once, reused by later runs.
fn python_environment() -> PathBuf {
    let venv = profile_dir().join("sdk-python");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        // System site packages: a machine with Debian's python3-pytest needs no download.
        run(Command::new("python3")
            .args(["-m", "venv", "--system-site-packages"])
            .arg(&venv));
    }
    let ready = Command::new(&python)
        .args(["-c", "import pytest, wheel, setuptools"])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ready {
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "pytest",
            "wheel",
            "setuptools",
        ]));
    }
    python
}

#[test]
fn the_python_package_installs_and_its_suite_passes_against_a_real_server() {
    let server = profile_dir().join(if cfg!(windows) {
        "scrip-server.exe"
    } else {
        "scrip-server"
    });
    assert!(
        server.exists(),
        "no server binary at {} (`cargo test --workspace` builds it; or `cargo build --release --bins`)",
        server.display()
    );
    let python = python_environment();
    let work = tempfile::tempdir().unwrap();
    // The package from the repository, with this build's generated module and library.
    let package = work.path().join("python");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("python"),
        &package,
    );
    // The README beside it, as in the repository: its Python snippet is one of the tests.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        work.path().join("README.md"),
    )
    .unwrap();
    let module_dir = package.join("scrip_sdk");
    generate("python", &module_dir);
    std::fs::copy(library(), module_dir.join(library().file_name().unwrap())).unwrap();
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
            "--force-reinstall",
        ])
        .arg(&package)
        .current_dir(work.path()));
    // Run from outside the package directory, so the tests import the installed copy.
    let output = run(Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(package.join("tests"))
        .env("SCRIP_SERVER_BIN", &server)
        .current_dir(work.path()));
    println!("{output}");
    assert!(output.contains(" passed"), "{output}");
    assert!(!output.contains("skipped"), "{output}");
}

#[test]
fn kotlin_and_swift_sources_are_generated_with_the_whole_surface() {
    let out = tempfile::tempdir().unwrap();
    generate("kotlin", &out.path().join("kotlin"));
    generate("swift", &out.path().join("swift"));
    let kotlin = std::fs::read_to_string(out.path().join("kotlin/uniffi/scrip/scrip.kt")).unwrap();
    let swift = std::fs::read_to_string(out.path().join("swift/scrip.swift")).unwrap();
    assert!(out.path().join("swift/scripFFI.h").exists());
    assert!(out.path().join("swift/scripFFI.modulemap").exists());
    // What the SDK README's snippets use, in each language's spelling.
    for name in [
        "class Wallet",
        "class Merchant",
        "class IssuerHttp",
        "interface WalletStore",
        "fun `versions`",
        "class MerchantSetup",
        "fun `newStorageKey`",
        "class ScripException",
        "fun `pay`",
        "fun `settle`",
    ] {
        assert!(kotlin.contains(name), "Kotlin lacks {name}");
    }
    for name in [
        "class Wallet",
        "class Merchant",
        "class IssuerHttp",
        "protocol WalletStore",
        "func versions()",
        "class MerchantSetup",
        "func newStorageKey()",
        "enum ScripError",
        "func pay(",
        "func settle(",
    ] {
        assert!(swift.contains(name), "Swift lacks {name}");
    }
}
