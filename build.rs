//! Generates `include/eventstore.h` from `src/ffi/` with cbindgen (pinned in
//! Cargo.toml, so that a fresh generation is byte-identical to the committed header),
//! and gives the shared library its SONAME.
//!
//! `EVENTSTORE_HEADER_OUT=<file>` writes the header there instead of to `include/`
//! (used by `scripts/check-header.sh` to compare without touching the tree).

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=EVENTSTORE_HEADER_OUT");

    // The SONAME: programs linked against libeventstore.so record
    // libeventstore.so.MAJOR (libeventstore.so.0), which the install step links to the
    // versioned file.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libeventstore.so.{major}");
    }

    let out = env::var_os("EVENTSTORE_HEADER_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("include").join("eventstore.h"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header from src/ffi");
    let mut text = Vec::new();
    bindings.write(&mut text);
    // Write only on change, so that an unchanged header keeps its timestamp.
    if std::fs::read(&out).ok().as_deref() != Some(&text[..]) {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).expect("create the header's directory");
        }
        std::fs::write(&out, &text).expect("write the header");
    }
}
