//! The C ABI as C sees it: compiles the programs in `tests/c/` and `examples/` with the
//! system C and C++ compilers against the shared library that `cargo test` built (the
//! crate is also a `cdylib`), and runs them natively, under valgrind memcheck, and
//! built with AddressSanitizer + UndefinedBehaviorSanitizer. Also checks the exported
//! symbols, the SONAME, and an installed prefix used through pkg-config.
//!
//! Needs `cc`, `c++`, `nm`, `readelf`, `make`, `pkg-config` and `valgrind`. When valgrind
//! is missing the valgrind test fails if `CI` is set and prints a loud SKIP otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The functions of the contract (shared/API.md) and the additions.
const EXPORTS: &[&str] = &[
    "es_append",
    "es_append_multi",
    "es_close",
    "es_free",
    "es_free_streams",
    "es_global_position",
    "es_last_conflict",
    "es_last_conflict_stream",
    "es_last_error",
    "es_list_streams",
    "es_open",
    "es_open_with",
    "es_read_all",
    "es_read_all_backward",
    "es_read_all_filtered",
    "es_read_event",
    "es_read_stream",
    "es_read_stream_backward",
    "es_set_log_callback",
    "es_status_name",
    "es_store_info_get",
    "es_stream_version",
    "es_subscribe",
    "es_subscription_close",
    "es_subscription_next",
    "es_subscription_position",
    "es_uuid_format",
    "es_uuid_parse",
    "es_version",
    "es_wait",
    "es_wake",
];

/// A C test program: its source, whether it is C++, and what its output says when
/// it succeeded. Test programs take a scratch directory; the example takes a store path.
struct Program {
    name: &'static str,
    source: &'static str,
    cxx: bool,
    takes_store_path: bool,
    success: &'static str,
}

const PROGRAMS: &[Program] = &[
    Program {
        name: "test_api",
        source: "tests/c/test_api.c",
        cxx: false,
        takes_store_path: false,
        success: "checks passed",
    },
    Program {
        name: "test_errors",
        source: "tests/c/test_errors.c",
        cxx: false,
        takes_store_path: false,
        success: "checks passed",
    },
    Program {
        name: "test_threads",
        source: "tests/c/test_threads.c",
        cxx: false,
        takes_store_path: false,
        success: "checks passed",
    },
    Program {
        name: "test_follow",
        source: "tests/c/test_follow.c",
        cxx: false,
        takes_store_path: false,
        success: "checks passed",
    },
    Program {
        name: "test_writes",
        source: "tests/c/test_writes.c",
        cxx: false,
        takes_store_path: false,
        success: "checks passed",
    },
    Program {
        name: "test_info",
        source: "tests/c/test_info.c",
        cxx: false,
        takes_store_path: false,
        success: "checks passed",
    },
    Program {
        name: "test_cxx",
        source: "tests/c/test_cxx.cpp",
        cxx: true,
        takes_store_path: false,
        success: "test_cxx: passed",
    },
    HARNESS,
];

/// The example a C developer reads first.
const HARNESS: Program = Program {
    name: "harness",
    source: "examples/harness.c",
    cxx: false,
    takes_store_path: true,
    success: "closing with 4 events",
};

/// The directory holding the libraries this test binary was built with
/// (`target/<profile>/deps`, where cargo puts the crate's `cdylib` and `staticlib`).
fn built_lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .expect("the test binary's directory")
        .to_path_buf();
    for lib in ["libeventstore.so", "libeventstore.a"] {
        assert!(
            dir.join(lib).is_file(),
            "{lib} is not in {}: the crate's cdylib/staticlib should be built beside the tests",
            dir.display()
        );
    }
    dir
}

/// A copy of the shared library with its SONAME link (`libeventstore.so.0`), in
/// `target/<profile>/c-abi-lib/`, made once per test run, so that programs linked
/// there find it through their rpath.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let built = built_lib_dir();
        let dir = built.parent().expect("target/<profile>").join("c-abi-lib");
        std::fs::create_dir_all(&dir).expect("create c-abi-lib");
        // Copy then rename, so that a program never links a half-written file.
        let partial = dir.join(format!("libeventstore.so.partial-{}", std::process::id()));
        std::fs::copy(built.join("libeventstore.so"), &partial).expect("copy libeventstore.so");
        std::fs::rename(&partial, dir.join("libeventstore.so")).expect("rename libeventstore.so");
        let link = dir.join("libeventstore.so.0");
        if std::fs::read_link(&link).is_err() {
            std::os::unix::fs::symlink("libeventstore.so", &link)
                .expect("symlink libeventstore.so.0");
        }
        dir
    })
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    if !out.status.success() {
        panic!(
            "{shown} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn tool_exists(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Compiles `program` into `out_dir` with the strict flags of the contract (plus
/// `extra`), linked against [`lib_dir`] with an rpath, and returns the executable.
fn compile(program: &Program, out_dir: &Path, suffix: &str, extra: &[&str]) -> PathBuf {
    let exe = out_dir.join(format!("{}{suffix}", program.name));
    let lib = lib_dir();
    let mut cmd = if program.cxx {
        let mut c = Command::new("c++");
        c.args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"]);
        c
    } else {
        let mut c = Command::new("cc");
        c.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]);
        c
    };
    cmd.current_dir(MANIFEST_DIR)
        .args(["-g", "-pthread", "-Iinclude", "-Itests/c"])
        .args(extra)
        .arg(program.source)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg("-leventstore")
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    run(&mut cmd);
    exe
}

/// Runs `program`'s `exe` on a fresh scratch directory (or a store in one) under
/// `wrapper` (e.g. valgrind), expecting success.
fn run_program(program: &Program, exe: &Path, wrapper: &[&str], env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let arg = if program.takes_store_path {
        dir.path().join("store")
    } else {
        dir.path().to_path_buf()
    };
    let mut cmd = match wrapper.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg(arg).envs(env.iter().copied());
    let out = run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    assert!(text.contains(program.success), "{}: {text}", program.name);
}

#[test]
fn c_programs_pass_natively() {
    let out = tempfile::tempdir().expect("temp dir");
    for p in PROGRAMS {
        let exe = compile(p, out.path(), "", &[]);
        run_program(p, &exe, &[], &[]);
    }
}

#[test]
fn c_programs_pass_under_valgrind() {
    if !tool_exists("valgrind") {
        if std::env::var_os("CI").is_some() {
            panic!("valgrind is not installed, and CI is set: .ci/run must install it");
        }
        eprintln!(
            "\n***** SKIP: valgrind is not installed: the C tests did NOT run under \
             memcheck (install valgrind; CI fails without it) *****\n"
        );
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    for p in PROGRAMS {
        let exe = compile(p, out.path(), "", &[]);
        run_program(
            p,
            &exe,
            &[
                "valgrind",
                "--quiet",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--track-fds=no",
            ],
            &[],
        );
    }
}

#[test]
fn c_programs_pass_with_address_and_undefined_sanitizers() {
    let out = tempfile::tempdir().expect("temp dir");
    // The programs are instrumented; the Rust library is not, but every allocation it
    // makes goes through malloc/free, which ASan intercepts (and LSan checks for leaks
    // at exit). The ASan runtime is linked into the executable, so it loads first and
    // needs no LD_PRELOAD.
    let flags = [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
    ];
    let env = [
        (
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=98",
        ),
        ("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
    ];
    for p in PROGRAMS {
        let exe = compile(p, out.path(), "-asan", &flags);
        run_program(p, &exe, &[], &env);
    }
}

/// The example a C developer reads first builds with the contract's flags and runs,
/// again and again on the same store.
#[test]
fn example_harness_runs_repeatedly() {
    let out = tempfile::tempdir().expect("temp dir");
    let exe = compile(&HARNESS, out.path(), "", &[]);
    let store = out.path().join("example.store");
    for round in 1..=2u64 {
        let output = run(Command::new(&exe).arg(&store));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("conflict, as expected"), "{text}");
        assert!(
            text.contains(&format!("closing with {} events", 4 * round)),
            "{text}"
        );
    }
    // And without an argument, on its default path (in its working directory).
    let output = run(Command::new(&exe).current_dir(out.path()));
    assert!(String::from_utf8_lossy(&output.stdout).contains("closing with 4 events"));
    assert!(out.path().join("eventstore-example.store").is_file());
}

/// Every symbol the shared library defines for dynamic linking is an `es_*` function
/// of the header, and every function of the contract is there; the SONAME is
/// `libeventstore.so.0`.
#[test]
fn only_es_symbols_are_exported() {
    let so = built_lib_dir().join("libeventstore.so");
    let out = run(Command::new("nm")
        .args(["-D", "--defined-only", "--format=posix"])
        .arg(&so));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(names, EXPORTS, "dynamic symbols of {}", so.display());

    let header = std::fs::read_to_string(Path::new(MANIFEST_DIR).join("include/eventstore.h"))
        .expect("read include/eventstore.h");
    for name in EXPORTS {
        assert!(
            header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}(")),
            "{name} is not declared in include/eventstore.h"
        );
    }

    let dynamic = run(Command::new("readelf").arg("-d").arg(&so));
    let text = String::from_utf8_lossy(&dynamic.stdout);
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    assert!(
        text.contains(&format!("Library soname: [libeventstore.so.{major}]")),
        "{text}"
    );
}

/// `make install-files PREFIX=...` lays out lib/, include/ and lib/pkgconfig/, the
/// libraries stripped (the .so's debug info split off beside it, with a debuglink); a
/// program built with only `pkg-config --cflags --libs eventstore` runs against it
/// (through `LD_LIBRARY_PATH`, and through an rpath alone), one linking libeventstore.a
/// with `pkg-config --static --libs` runs without it, and so does a fully `-static`
/// one (where the C library's static archive is installed).
#[test]
fn installed_prefix_works_through_pkg_config() {
    let prefix = tempfile::tempdir().expect("temp dir");
    let p = prefix.path();
    let version = env!("CARGO_PKG_VERSION");
    run(Command::new("make")
        .current_dir(MANIFEST_DIR)
        .arg("-s")
        .arg("install-files")
        .arg(format!("PREFIX={}", p.display()))
        .arg(format!("LIBSRC={}", built_lib_dir().display())));

    let lib = p.join("lib");
    assert!(
        std::fs::symlink_metadata(lib.join(format!("libeventstore.so.{version}")))
            .expect("versioned library")
            .is_file()
    );
    for (link, target) in [
        (
            "libeventstore.so.0".to_string(),
            format!("libeventstore.so.{version}"),
        ),
        (
            "libeventstore.so".to_string(),
            "libeventstore.so.0".to_string(),
        ),
    ] {
        let found = std::fs::read_link(lib.join(&link)).expect("a symlink");
        assert_eq!(found, Path::new(&target), "{link}");
    }
    assert!(lib.join("libeventstore.a").is_file());
    assert!(p.join("include/eventstore.h").is_file());

    // Stripped, with the debug info kept apart and linked.
    let so = lib.join(format!("libeventstore.so.{version}"));
    let sections = |file: &Path| {
        String::from_utf8_lossy(&run(Command::new("readelf").arg("-S").arg(file)).stdout)
            .into_owned()
    };
    let so_sections = sections(&so);
    assert!(!so_sections.contains(".debug_info"), "{so_sections}");
    assert!(so_sections.contains(".gnu_debuglink"), "{so_sections}");
    let debug = lib.join(format!("libeventstore.so.{version}.debug"));
    assert!(sections(&debug).contains(".debug_info"));
    assert!(!sections(&lib.join("libeventstore.a")).contains(".debug_info"));

    let pkg = |args: &[&str]| -> Vec<String> {
        let out = run(Command::new("pkg-config")
            .args(args)
            .arg("eventstore")
            .env("PKG_CONFIG_PATH", lib.join("pkgconfig")));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(pkg(&["--modversion"]), [version]);
    let source = Path::new(MANIFEST_DIR).join("tests/c/pkgconfig_consumer.c");

    // Dynamic: only pkg-config's flags; the loader is pointed at the prefix.
    let exe = p.join("consumer");
    run(Command::new("cc")
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .args(pkg(&["--cflags", "--libs"])));
    let out = run(Command::new(&exe)
        .arg(p.join("dynamic.store"))
        .env("LD_LIBRARY_PATH", &lib));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("libeventstore {version}, 1 event(s)")),
        "{text}"
    );

    // Static: libeventstore.a and the private libraries pkg-config lists for it.
    let exe = p.join("consumer-static");
    let libs: Vec<String> = pkg(&["--static", "--libs"])
        .into_iter()
        .map(|flag| {
            if flag == "-leventstore" {
                lib.join("libeventstore.a").display().to_string()
            } else {
                flag
            }
        })
        .collect();
    run(Command::new("cc")
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .args(pkg(&["--cflags"]))
        .args(libs));
    let out = run(Command::new(&exe)
        .arg(p.join("static.store"))
        .env_remove("LD_LIBRARY_PATH"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 event(s)"));

    // An rpath: the program finds the installed .so with no environment at all.
    let exe = p.join("consumer-rpath");
    run(Command::new("cc")
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .args(pkg(&["--cflags", "--libs"]))
        .arg(format!("-Wl,-rpath,{}", lib.display())));
    let out = run(Command::new(&exe)
        .arg(p.join("rpath.store"))
        .env_remove("LD_LIBRARY_PATH"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 event(s)"));

    // Fully static, with pkg-config's flags only (no -lgcc_s, which has no archive).
    let libc_a = run(Command::new("cc").arg("-print-file-name=libc.a"));
    if !Path::new(String::from_utf8_lossy(&libc_a.stdout).trim()).is_absolute() {
        eprintln!("SKIPPED: cc -static: the C library's static archive (libc.a) is not installed");
        return;
    }
    let exe = p.join("consumer-fully-static");
    run(Command::new("cc")
        .arg("-static")
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .args(pkg(&["--cflags", "--static", "--libs"])));
    let out = run(Command::new("readelf").arg("-d").arg(&exe));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("NEEDED"),
        "a -static program needs no shared library"
    );
    let out = run(Command::new(&exe)
        .arg(p.join("fully-static.store"))
        .env_remove("LD_LIBRARY_PATH"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 event(s)"));
}
