//! Packaging: the manual pages render cleanly; `make install` puts
//! exactly one executable, its four links, five pages (gzipped, or as they
//! are with `GZIP_MAN=0`) and the licence and README in place, each link
//! runs its own program, and `make uninstall` takes them all away again.
//! Runs `groff`, `make`, `gzip` and `man`; each test is skipped with a
//! message when a tool it needs is not installed.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The crate root, where the Makefile and `man/` are.
fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory that holds the `pen` under test (cargo's, or the one
/// `PEN_TEST_BINDIR` names): `make install` copies it from there.
fn build_dir() -> PathBuf {
    PEN.path()
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
        "DOCDIR",
        "LINKS",
        "GZIP_MAN",
        "STATIC",
        "TARGET",
        "TLS",
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
            names.contains(&format!("{}.1", program.name)),
            "man/{}.1 is missing (have {names:?})",
            program.name
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

/// The companions, installed as links to `pen`.
const LINKED: [&str; 4] = ["penctl", "penlog", "penlogd", "mergelogs"];
/// The documents installed in `$(PREFIX)/share/doc/pen`.
const DOCS: [&str; 2] = ["COPYING", "README.md"];

/// How `make install` puts the manual pages in place.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pages {
    /// The default: `NAME.1.gz`.
    Gzipped,
    /// `GZIP_MAN=0`: `NAME.1`, as in `man/`.
    Plain,
}

impl Pages {
    /// The installed file name of `program`'s page.
    fn file_name(self, program: &str) -> String {
        match self {
            Pages::Gzipped => format!("{program}.1.gz"),
            Pages::Plain => format!("{program}.1"),
        }
    }
}

/// What `make install PREFIX=/usr` must put under DESTDIR: one binary,
/// four links, five pages, the licence and the README.
fn expected_tree(pages: Pages) -> BTreeSet<String> {
    let mut expected = BTreeSet::new();
    for program in PROGRAMS {
        expected.insert(format!("usr/bin/{}", program.name));
        expected.insert(format!(
            "usr/share/man/man1/{}",
            pages.file_name(program.name)
        ));
    }
    for doc in DOCS {
        expected.insert(format!("usr/share/doc/pen/{doc}"));
    }
    expected
}

/// The contents of a gzip file, which must carry no file name and no time
/// stamp (`gzip -n`: the same bytes on every install).
fn gunzip(path: &Path) -> Vec<u8> {
    let gz = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        gz.len() > 10 && gz[..3] == [0x1f, 0x8b, 8],
        "{} is not gzip",
        path.display()
    );
    assert_eq!(gz[3] & 0x08, 0, "{} records a file name", path.display());
    assert_eq!(gz[4..8], [0; 4], "{} records a time stamp", path.display());
    let out = run_command(
        Command::new("gzip").arg("-dc").arg(path),
        Vec::new(),
        DEADLINE,
    );
    assert!(out.status.success(), "gzip -dc: {}", describe(&out));
    out.stdout
}

/// `man -l PAGE` formats the installed page (when `man` is installed): it
/// finds the page's name in it.
fn check_man_renders(page: &Path, program: &str) {
    if !have("man") {
        eprintln!("not rendering {}: man is not installed", page.display());
        return;
    }
    let out = run_command(
        Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C"),
        Vec::new(),
        DEADLINE,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("NAME") && text.contains(program),
        "man -l {}: {}",
        page.display(),
        describe(&out)
    );
}

/// Installs into a fresh DESTDIR with `PREFIX=/usr` and `extra` variables
/// (`GZIP_MAN=0` too for `Pages::Plain`), checks the tree, and returns
/// DESTDIR.
fn install(tag: &str, extra: &[(&str, &Path)], pages: Pages) -> TempDir {
    let dest = TempDir::new(tag);
    let build = build_dir();
    let mut vars = vec![
        ("DESTDIR", dest.path()),
        ("PREFIX", Path::new("/usr")),
        ("BUILDDIR", build.as_path()),
    ];
    vars.extend_from_slice(extra);
    if pages == Pages::Plain {
        vars.push(("GZIP_MAN", Path::new("0")));
    }
    let out = make("install", &vars);
    assert!(out.status.success(), "make install: {}", describe(&out));
    assert_eq!(
        files_under(dest.path()),
        expected_tree(pages),
        "installed tree"
    );

    let bin = dest.path().join("usr/bin");
    let installed = bin.join("pen");
    assert_eq!(mode(&installed), 0o755, "{}", installed.display());
    let built = std::fs::metadata(build.join("pen")).expect("built binary");
    let copied = std::fs::metadata(&installed).expect("installed binary");
    assert_eq!(copied.len(), built.len(), "pen copied whole");
    for program in PROGRAMS {
        let page = dest
            .path()
            .join("usr/share/man/man1")
            .join(pages.file_name(program.name));
        assert_eq!(mode(&page), 0o644, "{}", page.display());
        let source = std::fs::read(crate_root().join("man").join(format!("{}.1", program.name)))
            .expect("read source page");
        let installed = match pages {
            Pages::Gzipped => gunzip(&page),
            Pages::Plain => std::fs::read(&page).expect("read installed page"),
        };
        assert!(
            installed == source,
            "{} is not man/{}.1",
            page.display(),
            program.name
        );
        check_man_renders(&page, program.name);
    }
    for doc in DOCS {
        let installed = dest.path().join("usr/share/doc/pen").join(doc);
        assert_eq!(mode(&installed), 0o644, "{}", installed.display());
        assert_eq!(
            std::fs::read(&installed).expect("read installed doc"),
            std::fs::read(crate_root().join(doc)).expect("read source doc"),
            "{doc} copied unchanged"
        );
    }
    dest
}

/// Uninstalls from `dest` and checks nothing is left.
fn uninstall(dest: &TempDir) {
    let build = build_dir();
    let vars = [
        ("DESTDIR", dest.path()),
        ("PREFIX", Path::new("/usr")),
        ("BUILDDIR", build.as_path()),
    ];
    let out = make("uninstall", &vars);
    assert!(out.status.success(), "make uninstall: {}", describe(&out));
    assert_eq!(
        files_under(dest.path()),
        BTreeSet::new(),
        "files left after make uninstall"
    );
    assert!(
        !dest.path().join("usr/share/doc/pen").exists(),
        "make uninstall leaves the doc directory it made"
    );
}

/// Runs `path ARGS`; its output, which must be a success.
fn run_ok(path: &Path, args: &[&str]) -> String {
    let out = run(path, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {args:?}: {}",
        path.display(),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each installed name runs its own program: `--version` and `--help` name
/// it, and each does one real job, the companions both through their link
/// and as `pen NAME ...`.
fn check_programs(bin: &Path) {
    let pen = bin.join("pen");
    let version = run_ok(&pen, &["--version"]);
    assert!(version.starts_with("pen 0.34.1 "), "{version}");
    assert!(
        run_ok(&pen, &["--help"]).contains("[host:]port"),
        "pen --help"
    );
    for name in LINKED {
        let link = bin.join(name);
        let expected = format!("{name} (pen) {}\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(run_ok(&link, &["--version"]), expected, "{name} --version");
        assert_eq!(
            run_ok(&pen, &[name, "--version"]),
            expected,
            "pen {name} --version"
        );
        let help = run_ok(&link, &["--help"]);
        assert!(
            help.to_lowercase().starts_with("usage") && help.contains(name),
            "{name} --help: {help}"
        );
        // A usage error names the program and exits 2, as before.
        let out = run(&link, &["--no-such-option"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with(&format!("{name}: ")),
            "{name}: {}",
            describe(&out)
        );
    }

    // pen relays, and penctl (link and `pen penctl`) talks to its control port.
    let backend = Backend::start("B", Behaviour::Name);
    let control = free_port().to_string();
    let balancer = Pen::serve_program(&pen, &["-u", "root", "-C", &control], &[backend.spec()]);
    assert_eq!(ask("127.0.0.1", balancer.port), "B");
    let target = format!("127.0.0.1:{control}");
    assert_eq!(
        run_ok(&bin.join("penctl"), &[&target, "mode"]),
        ctl(control.parse().unwrap(), "mode")
    );
    let servers = run_ok(&pen, &["penctl", &target, "servers"]);
    assert!(
        servers.contains(&format!("addr {}", backend.spec().replace(':', " port "))),
        "{servers}"
    );

    // penlog sends a line to penlogd, which writes it to its log.
    let dir = TempDir::new("installed-logs");
    let log = dir.join("access.log");
    let log_port = free_udp_port("127.0.0.1");
    let _penlogd = ChildGuard::spawn(
        Command::new(bin.join("penlogd"))
            .args(["-f", "-a", "127.0.0.1", "-l"])
            .arg(&log)
            .arg(log_port.to_string())
            .stdin(std::process::Stdio::null()),
    );
    wait_for_udp_port(log_port);
    let line = "127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /installed HTTP/1.0\" 200 5";
    let out = run_command(
        Command::new(bin.join("penlog")).args(["127.0.0.1", &log_port.to_string(), "127.0.0.2"]),
        format!("{line}\n").into_bytes(),
        DEADLINE,
    );
    assert_eq!(out.status.code(), Some(0), "penlog: {}", describe(&out));
    wait_file_contains(&log, "GET /installed", DEADLINE);

    // mergelogs puts pen's client into a web server's line.
    let pen_log = dir.file("pen.log", "10.1.1.1 1795683600 127.0.0.2 GET /x HTTP/1.0\n");
    let web_log = dir.file(
        "web.log",
        "127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n",
    );
    let server = format!("127.0.0.2:{}", web_log.display());
    let merged = run_ok(
        &bin.join("mergelogs"),
        &["-p", pen_log.to_str().unwrap(), &server],
    );
    assert_eq!(
        merged,
        "10.1.1.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n"
    );
}

#[test]
fn installed_links_run_their_programs() {
    if !have("make") || !have("gzip") {
        eprintln!("skipping: make or gzip is not installed");
        return;
    }
    let dest = install("destdir", &[], Pages::Gzipped);
    let bin = dest.path().join("usr/bin");
    for name in LINKED {
        let link = bin.join(name);
        let target = std::fs::read_link(&link)
            .unwrap_or_else(|e| panic!("{} is not a symbolic link: {e}", link.display()));
        assert_eq!(target, Path::new("pen"), "{name} links to pen, relatively");
    }
    check_programs(&bin);
    uninstall(&dest);
}

#[test]
fn installed_hard_links_run_their_programs() {
    if !have("make") {
        eprintln!("skipping: make is not installed");
        return;
    }
    let dest = install(
        "destdir-hard",
        &[("LINKS", Path::new("hard"))],
        Pages::Plain,
    );
    let bin = dest.path().join("usr/bin");
    let pen_inode = std::fs::metadata(bin.join("pen")).expect("pen").ino();
    for name in LINKED {
        let link = bin.join(name);
        let meta = std::fs::symlink_metadata(&link).expect("installed link");
        assert!(meta.file_type().is_file(), "{name} is a hard link");
        assert_eq!(meta.ino(), pen_inode, "{name} is the same file as pen");
    }
    check_programs(&bin);
    uninstall(&dest);
}

#[test]
fn install_refuses_unknown_choices() {
    if !have("make") {
        eprintln!("skipping: make is not installed");
        return;
    }
    let cases = [
        (
            "LINKS",
            "soft",
            "LINKS=soft: say LINKS=symbolic or LINKS=hard",
        ),
        (
            "GZIP_MAN",
            "yes",
            "GZIP_MAN=yes: say GZIP_MAN=1 or GZIP_MAN=0",
        ),
    ];
    for (name, value, expected) in cases {
        let dest = TempDir::new("destdir-badchoice");
        let build = build_dir();
        let out = make(
            "install",
            &[
                ("DESTDIR", dest.path()),
                ("BUILDDIR", build.as_path()),
                (name, Path::new(value)),
            ],
        );
        assert!(
            !out.status.success(),
            "{name}={value} accepted: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{}",
            describe(&out)
        );
        assert_eq!(files_under(dest.path()), BTreeSet::new());
    }
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

#[test]
fn static_build_stops_with_one_line_when_it_cannot_be_static() {
    if !have("make") {
        eprintln!("skipping: make is not installed");
        return;
    }
    let cases: [(&[(&str, &Path)], &str); 3] = [
        (
            &[("STATIC", Path::new("1")), ("TLS", Path::new("1"))],
            "TLS=1 cannot be combined with STATIC=1",
        ),
        (
            &[
                ("STATIC", Path::new("1")),
                ("TARGET", Path::new("nosuch-unknown-linux-musl")),
            ],
            "make STATIC=1: rustc does not know the target nosuch-unknown-linux-musl",
        ),
        (
            &[
                ("STATIC", Path::new("1")),
                ("TARGET", Path::new("x86_64-unknown-linux-gnu")),
            ],
            "make STATIC=1: TARGET=x86_64-unknown-linux-gnu is not a musl target",
        ),
    ];
    for (vars, expected) in cases {
        let out = make("all", vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{vars:?}: {}", describe(&out));
        assert!(
            out.stdout.is_empty(),
            "{vars:?} started a build: {}",
            describe(&out)
        );
        assert_eq!(stderr.lines().count(), 1, "{vars:?}: {}", describe(&out));
        assert!(stderr.contains(expected), "{vars:?}: {}", describe(&out));
    }
}
