//! Packaging: the manual pages render cleanly, and `make install` /
//! `make uninstall` put exactly the five programs and five pages in place
//! and take them away again. Runs `groff` and `make`; each test is skipped
//! with a message when its tool is not installed.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const PROGRAMS: [&str; 5] = ["pen", "penctl", "penlog", "penlogd", "mergelogs"];

/// The crate root, where the Makefile and `man/` are.
fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory cargo built the test binaries in; it holds all five.
fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_pen"))
        .parent()
        .expect("a binary path has a parent directory")
        .to_path_buf()
}

/// Whether `tool --version` can be run at all.
fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// The manual pages shipped in `man/`.
fn man_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(crate_root().join("man"))
        .expect("read man/")
        .map(|e| e.expect("read man/ entry").path())
        .filter(|p| p.extension() == Some(OsStr::new("1")))
        .collect();
    pages.sort();
    pages
}

/// Runs `make TARGET VARS...` in the crate root. Variables that the
/// environment could use to redirect the install (the Makefile reads them
/// with `?=`) and a parent make's flags are removed, so only `vars` count.
fn make(target: &str, vars: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("make");
    cmd.current_dir(crate_root())
        .arg("--no-print-directory")
        .arg(target);
    for (name, value) in vars {
        let mut arg = std::ffi::OsString::from(format!("{name}="));
        arg.push(value.as_os_str());
        cmd.arg(arg);
    }
    for var in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "BINDIR",
        "MANDIR",
        "INSTALL",
        "DESTDIR",
        "PREFIX",
        "BUILDDIR",
    ] {
        cmd.env_remove(var);
    }
    run_command(&mut cmd, Vec::new(), Duration::from_secs(60))
}

/// A command's exit status and output, for failure messages.
fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file (not directory) under `root`, as paths relative to it.
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.expect("read directory entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(root, &path, found);
            } else {
                let rel = path.strip_prefix(root).expect("path under root");
                found.insert(rel.display().to_string());
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(root, root, &mut found);
    found
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn man_pages_render_without_warnings() {
    if !have("groff") {
        eprintln!("skipping: groff is not installed (apt-get install groff-base)");
        return;
    }
    let pages = man_pages();
    let names: BTreeSet<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for program in PROGRAMS {
        assert!(
            names.contains(&format!("{program}.1")),
            "man/{program}.1 is missing (have {names:?})"
        );
    }
    for page in &pages {
        let out = run_command(
            Command::new("groff").args(["-man", "-ww", "-z"]).arg(page),
            Vec::new(),
            DEADLINE,
        );
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "groff -man -ww -z {}: {}",
            page.display(),
            describe(&out)
        );
    }
}

#[test]
fn install_and_uninstall_put_exactly_the_programs_and_pages() {
    if !have("make") {
        eprintln!("skipping: make is not installed");
        return;
    }
    let dest = TempDir::new("destdir");
    let build = build_dir();
    let vars = [
        ("DESTDIR", dest.path()),
        ("PREFIX", Path::new("/usr")),
        ("BUILDDIR", build.as_path()),
    ];

    let out = make("install", &vars);
    assert!(out.status.success(), "make install: {}", describe(&out));

    let mut expected = BTreeSet::new();
    for program in PROGRAMS {
        expected.insert(format!("usr/bin/{program}"));
        expected.insert(format!("usr/share/man/man1/{program}.1"));
    }
    assert_eq!(files_under(dest.path()), expected, "installed tree");

    for program in PROGRAMS {
        let installed = dest.path().join("usr/bin").join(program);
        assert_eq!(mode(&installed), 0o755, "{}", installed.display());
        let built = std::fs::metadata(build.join(program)).expect("built binary");
        let copied = std::fs::metadata(&installed).expect("installed binary");
        assert_eq!(copied.len(), built.len(), "{program} copied whole");

        let page = dest
            .path()
            .join("usr/share/man/man1")
            .join(format!("{program}.1"));
        assert_eq!(mode(&page), 0o644, "{}", page.display());
        let source = std::fs::read(crate_root().join("man").join(format!("{program}.1")))
            .expect("read source page");
        assert_eq!(
            std::fs::read(&page).expect("read installed page"),
            source,
            "{program}.1 copied unchanged"
        );
    }

    let out = make("uninstall", &vars);
    assert!(out.status.success(), "make uninstall: {}", describe(&out));
    assert_eq!(
        files_under(dest.path()),
        BTreeSet::new(),
        "files left after make uninstall"
    );
}

#[test]
fn install_without_built_programs_fails_clearly() {
    if !have("make") {
        eprintln!("skipping: make is not installed");
        return;
    }
    let dest = TempDir::new("destdir-nobuild");
    let empty_build = TempDir::new("empty-builddir");
    let out = make(
        "install",
        &[
            ("DESTDIR", dest.path()),
            ("PREFIX", Path::new("/usr")),
            ("BUILDDIR", empty_build.path()),
        ],
    );
    assert!(
        !out.status.success(),
        "make install succeeded without binaries: {}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = format!(
        "{}/pen is missing: run make first",
        empty_build.path().display()
    );
    assert!(
        stderr.contains(&missing),
        "expected '{missing}' on stderr: {}",
        describe(&out)
    );
    assert_eq!(
        files_under(dest.path()),
        BTreeSet::new(),
        "nothing may be installed when the programs are missing"
    );
}
