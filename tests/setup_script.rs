//! scripts/setup, and the README's commands that call it, on simulated machines: a temporary
//! copy of the scripts runs with a PATH of stub commands (apt-get, sudo, dpkg-query, id, rustup,
//! cargo, npm, ...) that log how they were called and "install" by adding more stubs. So the
//! install path is checked as root, as a user with sudo and as one without, although the machine
//! running the tests already has every package.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every Debian package the scripts may install; apt-get's stub knows no others.
const DEBIAN_PACKAGES: [&str; 5] = [
    "chromium",
    "chromium-driver",
    "mesa-vulkan-drivers",
    "nodejs",
    "npm",
];

/// The real programs the scripts use besides the stubbed ones; nothing else is on PATH.
const BASE_TOOLS: [&str; 16] = [
    "bash", "env", "awk", "grep", "sed", "cat", "dirname", "mkdir", "chmod", "cp", "touch", "head",
    "mktemp", "wc", "gzip", "rm",
];

/// Appended to every logging stub: its argv, its user id and the DEBIAN_FRONTEND it was given.
const LOG: &str = r#"echo "${0##*/}$(printf ' %s' "$@") | uid=$FAKE_UID frontend=${DEBIAN_FRONTEND:-unset}" >>"$STUB_ROOT/log""#;

const ID: &str = r#"[ "$1" = -u ] && echo "$FAKE_UID" || echo "uid=$FAKE_UID""#;

// sudo resets the environment (env_reset), so a variable set in front of it does not arrive.
const SUDO: &str = r#"exec env -u DEBIAN_FRONTEND FAKE_UID=0 "$@""#;

const APT_GET: &str = r#"
[ "$FAKE_UID" = 0 ] || { echo "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)" >&2; exit 100; }
case "$1" in
  update) touch "$STUB_ROOT/state/apt-lists" ;;
  install)
    shift
    for p in "$@"; do
      case "$p" in -*) continue ;; esac
      # A fresh machine has no package lists until apt-get update.
      [ -e "$STUB_ROOT/state/apt-lists" ] || { echo "E: Unable to locate package $p" >&2; exit 100; }
      case "$p" in
        chromium) cmd=chromium ;;
        chromium-driver) cmd=chromedriver ;;
        nodejs) cmd=node ;;
        npm) cmd=npm ;;
        mesa-vulkan-drivers) cmd= ;;
        *) echo "E: Unable to locate package $p" >&2; exit 100 ;;
      esac
      [ -z "$cmd" ] || cp "$STUB_ROOT/catalog/$cmd" "$STUB_ROOT/stubs/$cmd"
      touch "$STUB_ROOT/state/dpkg/$p"
    done ;;
  *) exit 100 ;;
esac"#;

const DPKG_QUERY: &str = r#"
for p; do :; done
[ -e "$STUB_ROOT/state/dpkg/$p" ] || { echo "dpkg-query: no packages found matching $p" >&2; exit 1; }
case "$*" in *db:Status-Status*) printf installed ;; *) printf 'install ok installed' ;; esac"#;

const DPKG: &str = r#"
[ "$1" = -s ] && [ -e "$STUB_ROOT/state/dpkg/$2" ] || { echo "dpkg-query: package '$2' is not installed" >&2; exit 1; }
echo "Status: install ok installed""#;

// `component list --toolchain T` lists a nightly's rust-src once `toolchain install T` ran.
const RUSTUP: &str = r#"
case "$1 $2" in
  "target list") cat "$STUB_ROOT/state/targets" ;;
  "target add") shift 2; for t; do echo "$t" >>"$STUB_ROOT/state/targets"; done ;;
  "component list")
    if [ "$3" = --toolchain ]; then
      grep -qx "$4" "$STUB_ROOT/state/toolchains" || exit 1
      echo rust-src
    else
      cat "$STUB_ROOT/state/components"
    fi ;;
  "toolchain install") echo "$3" >>"$STUB_ROOT/state/toolchains" ;;
  "component add") shift 2; for c; do echo "$c-x86_64-unknown-linux-gnu" >>"$STUB_ROOT/state/components"; done ;;
  *) exit 1 ;;
esac"#;

// cargo install wasm-bindgen-cli --version V installs both of its binaries at V; the rest
// (test, build) succeeds without doing anything.
const CARGO: &str = r#"
if [ "$1" = install ]; then
  while [ $# -gt 0 ]; do [ "$1" = --version ] && echo "$2" >"$STUB_ROOT/state/wasm-bindgen-version"; shift; done
  cp "$STUB_ROOT/catalog/wasm-bindgen" "$STUB_ROOT/stubs/wasm-bindgen"
  cp "$STUB_ROOT/catalog/wasm-bindgen" "$STUB_ROOT/stubs/wasm-bindgen-test-runner"
fi"#;

const WASM_BINDGEN: &str = r#"
[ "$1" = --version ] && { echo "${0##*/} $(cat "$STUB_ROOT/state/wasm-bindgen-version")"; exit 0; }
while [ $# -gt 0 ]; do
  if [ "$1" = --out-dir ]; then
    mkdir -p "$2/snippets/wasm-bindgen-rayon-0/src"
    echo wasm >"$2/sciscore_bg.wasm"
    echo "import('../../..')" >"$2/snippets/wasm-bindgen-rayon-0/src/workerHelpers.js"
  fi
  shift
done"#;

const NPM: &str = r#"
if [ "$1" = ci ]; then
  for p in $NPM_PACKAGES; do
    mkdir -p "node_modules/${p%@*}"
    printf '{\n  "name": "%s",\n  "version": "%s"\n}\n' "${p%@*}" "${p##*@}" >"node_modules/${p%@*}/package.json"
  done
fi"#;

/// One logged stub call.
#[derive(Debug)]
struct Call {
    argv: Vec<String>,
    uid: String,
    frontend: String,
}

impl Call {
    fn starts_with(&self, words: &[&str]) -> bool {
        self.argv.len() >= words.len() && self.argv.iter().zip(words).all(|(a, w)| a == w)
    }

    /// Whether the call changes the machine (reads such as `--version` do not).
    fn installs(&self) -> bool {
        ["apt-get", "sudo"].contains(&self.argv[0].as_str())
            || [
                &["cargo", "install"][..],
                &["rustup", "target", "add"],
                &["rustup", "component", "add"],
                &["rustup", "toolchain", "install"],
                &["npm", "ci"],
            ]
            .iter()
            .any(|w| self.starts_with(w))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Rust for the host only: no wasm32 target, clippy, packages, wasm-bindgen or node_modules.
    Fresh,
    /// Everything every part installs is there.
    Complete,
}

struct Machine {
    dir: tempfile::TempDir,
    uid: u32,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn real_tool(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is needed to run the setup script tests"))
}

fn cargo_lock_version(name: &str) -> String {
    let lock = fs::read_to_string(manifest_dir().join("Cargo.lock")).unwrap();
    let key = format!("name = \"{name}\"\n");
    let rest = &lock[lock.find(&key).unwrap() + key.len()..];
    rest.lines().next().unwrap()["version = ".len()..]
        .trim_matches('"')
        .to_string()
}

/// The packages of package-lock.json that scripts/setup installs: (name, version).
fn npm_packages() -> Vec<(String, String)> {
    let lock: serde_json::Value =
        serde_json::from_slice(&fs::read(manifest_dir().join("package-lock.json")).unwrap())
            .unwrap();
    lock["packages"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("node_modules/")?;
            (!name.contains("/node_modules/"))
                .then(|| (name.to_string(), v["version"].as_str().unwrap().to_string()))
        })
        .collect()
}

fn write_script(path: &Path, body: &str) {
    let bash = real_tool("bash");
    fs::write(path, format!("#!{}\n{body}\n", bash.display())).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

impl Machine {
    /// A machine whose user has id `uid` (0: root), with or without sudo, in `state`.
    fn new(uid: u32, sudo: bool, state: State) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "repo/scripts",
            "bin",
            "stubs",
            "catalog",
            "state/dpkg",
            "xdg",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for entry in fs::read_dir(manifest_dir().join("scripts")).unwrap() {
            let entry = entry.unwrap();
            fs::copy(
                entry.path(),
                root.join("repo/scripts").join(entry.file_name()),
            )
            .unwrap();
        }
        for f in ["Cargo.lock", "package.json", "package-lock.json"] {
            fs::copy(manifest_dir().join(f), root.join("repo").join(f)).unwrap();
        }
        for t in BASE_TOOLS {
            symlink(real_tool(t), root.join("bin").join(t)).unwrap();
        }
        let logged = |body: &str| format!("{LOG}\n{body}");
        let mut stubs = vec![
            ("id", ID.to_string()),
            ("dpkg-query", DPKG_QUERY.to_string()),
            ("dpkg", DPKG.to_string()),
            ("apt-get", logged(APT_GET)),
            ("rustup", logged(RUSTUP)),
            ("cargo", logged(CARGO)),
        ];
        if sudo {
            stubs.push(("sudo", logged(SUDO)));
        }
        for (name, body) in &stubs {
            write_script(&root.join("stubs").join(name), body);
        }
        for (name, body) in [
            ("wasm-bindgen", logged(WASM_BINDGEN)),
            ("npm", logged(NPM)),
            ("node", logged("")),
            ("chromium", logged("")),
            ("chromedriver", logged("")),
        ] {
            write_script(&root.join("catalog").join(name), &body);
        }
        let mut targets = vec!["x86_64-unknown-linux-gnu"];
        let mut components = vec!["cargo", "rust-std", "rustc"];
        if state == State::Complete {
            targets.push("wasm32-unknown-unknown");
            components.extend(["clippy", "rustfmt"]);
            for p in DEBIAN_PACKAGES {
                fs::write(root.join("state/dpkg").join(p), "").unwrap();
            }
            for (cmd, from) in [
                ("chromium", "chromium"),
                ("chromedriver", "chromedriver"),
                ("node", "node"),
                ("npm", "npm"),
                ("wasm-bindgen", "wasm-bindgen"),
                ("wasm-bindgen-test-runner", "wasm-bindgen"),
            ] {
                fs::copy(
                    root.join("catalog").join(from),
                    root.join("stubs").join(cmd),
                )
                .unwrap();
            }
            fs::write(
                root.join("state/wasm-bindgen-version"),
                cargo_lock_version("wasm-bindgen"),
            )
            .unwrap();
            for (name, version) in npm_packages() {
                let dir = root.join("repo/node_modules").join(&name);
                fs::create_dir_all(&dir).unwrap();
                let json =
                    format!("{{\n  \"name\": \"{name}\",\n  \"version\": \"{version}\"\n}}\n");
                fs::write(dir.join("package.json"), json).unwrap();
            }
        }
        let lines = |v: Vec<&str>, suffix: &str| {
            v.iter()
                .map(|t| format!("{t}{suffix}\n"))
                .collect::<String>()
        };
        fs::write(root.join("state/targets"), lines(targets, "")).unwrap();
        let components = lines(components, "-x86_64-unknown-linux-gnu");
        fs::write(root.join("state/components"), components).unwrap();
        let nightly = fs::read_to_string(manifest_dir().join("scripts/threads-toolchain")).unwrap();
        let toolchains = if state == State::Complete {
            nightly.trim().to_string() + "\n"
        } else {
            String::new()
        };
        fs::write(root.join("state/toolchains"), toolchains).unwrap();
        Machine { dir, uid }
    }

    /// Runs `scripts/<script> args` with only the stubs and the base tools on PATH.
    fn run(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let root = self.dir.path();
        let path = format!(
            "{}:{}",
            root.join("stubs").display(),
            root.join("bin").display()
        );
        Command::new(real_tool("bash"))
            .arg(root.join("repo/scripts").join(script))
            .args(args)
            .current_dir(root)
            .env_clear()
            .env("PATH", path)
            .env("HOME", root)
            .env("XDG_RUNTIME_DIR", root.join("xdg"))
            .env("STUB_ROOT", root)
            .env("FAKE_UID", self.uid.to_string())
            .env(
                "NPM_PACKAGES",
                npm_packages()
                    .iter()
                    .map(|(n, v)| format!("{n}@{v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// The calls logged since the last call of this, in order.
    fn take_log(&self) -> Vec<Call> {
        let path = self.dir.path().join("log");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let _ = fs::remove_file(&path);
        text.lines()
            .map(|line| {
                let (argv, who) = line.split_once(" | ").unwrap();
                let (uid, frontend) = who.split_once(' ').unwrap();
                Call {
                    argv: argv.split_whitespace().map(String::from).collect(),
                    uid: uid.trim_start_matches("uid=").to_string(),
                    frontend: frontend.trim_start_matches("frontend=").to_string(),
                }
            })
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The apt-get calls, each with what it saw: run by root, with DEBIAN_FRONTEND=noninteractive.
fn apt_calls(calls: &[Call]) -> Vec<&Call> {
    let apt: Vec<&Call> = calls.iter().filter(|c| c.argv[0] == "apt-get").collect();
    for c in &apt {
        assert_eq!(c.uid, "0", "apt-get not run as root: {c:?}");
        assert_eq!(c.frontend, "noninteractive", "{c:?}");
    }
    apt
}

/// The packages of the one `apt-get install` call, sorted, after exactly one `apt-get update`.
fn apt_installed(calls: &[Call]) -> Vec<String> {
    let apt = apt_calls(calls);
    let argv: Vec<Vec<&str>> = apt
        .iter()
        .map(|c| c.argv.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(argv.len(), 2, "one update, one install: {argv:?}");
    assert_eq!(argv[0], ["apt-get", "update", "-qq"]);
    assert_eq!(argv[1][..2], ["apt-get", "install"]);
    let mut packages: Vec<String> = argv[1][2..]
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.to_string())
        .collect();
    packages.sort();
    packages
}

fn has_call(calls: &[Call], words: &[&str]) -> bool {
    calls.iter().any(|c| c.starts_with(words))
}

#[test]
fn as_root_installs_everything_with_apt_get_directly_then_nothing() {
    let m = Machine::new(0, false, State::Fresh);
    let out = m.run("setup", &[], &[]);
    assert_ok(&out, "scripts/setup as root");
    let calls = m.take_log();
    assert!(!has_call(&calls, &["sudo"]), "{calls:?}");
    assert_eq!(apt_installed(&calls), DEBIAN_PACKAGES);
    assert!(has_call(
        &calls,
        &["rustup", "target", "add", "wasm32-unknown-unknown"]
    ));
    let version = cargo_lock_version("wasm-bindgen");
    let install = calls.iter().find(|c| c.starts_with(&["cargo", "install"]));
    let install = install.expect("wasm-bindgen-cli installed");
    assert!(install.argv.contains(&"wasm-bindgen-cli".to_string()));
    assert!(install
        .argv
        .windows(2)
        .any(|w| w == ["--version", &version]));
    assert!(has_call(&calls, &["npm", "ci"]));
    assert!(has_call(
        &calls,
        &["rustup", "component", "add", "clippy", "rustfmt"]
    ));
    let nightly = fs::read_to_string(manifest_dir().join("scripts/threads-toolchain")).unwrap();
    assert!(has_call(
        &calls,
        &[
            "rustup",
            "toolchain",
            "install",
            nightly.trim(),
            "--profile",
            "minimal",
            "--component",
            "rust-src"
        ]
    ));

    // What it installed is found the next time: no install, not a word.
    let again = m.run("setup", &[], &[]);
    assert_ok(&again, "scripts/setup again");
    let calls = m.take_log();
    assert!(calls.iter().all(|c| !c.installs()), "{calls:?}");
    assert_eq!(text(&again.stdout) + &text(&again.stderr), "");
}

#[test]
fn as_a_user_installs_debian_packages_through_sudo_only() {
    let m = Machine::new(1000, true, State::Fresh);
    let out = m.run("setup", &[], &[]);
    assert_ok(&out, "scripts/setup as a user with sudo");
    let calls = m.take_log();
    assert_eq!(apt_installed(&calls), DEBIAN_PACKAGES);
    for (i, c) in calls.iter().enumerate() {
        if c.argv[0] == "apt-get" {
            let before = &calls[i - 1];
            assert!(
                before.starts_with(&["sudo"]),
                "apt-get without sudo: {calls:?}"
            );
            assert!(before.argv.ends_with(&c.argv), "{before:?} then {c:?}");
        } else if c.argv[0] != "sudo" {
            // rustup, cargo and npm work in the user's own directories.
            assert_eq!(c.uid, "1000", "{c:?}");
        }
    }
    let again = m.run("setup", &[], &[]);
    assert_ok(&again, "scripts/setup again");
    assert!(m.take_log().iter().all(|c| !c.installs()));
}

#[test]
fn as_a_user_without_sudo_fails_with_one_line_naming_the_packages() {
    let m = Machine::new(1000, false, State::Fresh);
    let out = m.run("setup", &["gpu", "browser"], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("scripts/setup: "), "{err}");
    for p in DEBIAN_PACKAGES {
        assert!(err.contains(p), "{p} not named: {err}");
    }
    assert!(m.take_log().iter().all(|c| !c.installs()));
}

#[test]
fn on_a_complete_machine_does_nothing_and_says_nothing() {
    // Neither root nor a user without sudo: any install attempt would show in the log or fail.
    for uid in [0, 1000] {
        let m = Machine::new(uid, false, State::Complete);
        for args in [&[][..], &["wasm"], &["gpu", "browser"], &["lint"]] {
            let out = m.run("setup", args, &[]);
            assert_ok(&out, &format!("scripts/setup {args:?} as {uid}"));
            assert_eq!(text(&out.stdout) + &text(&out.stderr), "", "{args:?}");
            let calls = m.take_log();
            assert!(calls.iter().all(|c| !c.installs()), "{args:?}: {calls:?}");
        }
    }
}

#[test]
fn parts_install_only_what_they_name() {
    let m = Machine::new(0, false, State::Fresh);
    assert_ok(&m.run("setup", &["wasm"], &[]), "setup wasm");
    let calls = m.take_log();
    let installs: Vec<&str> = calls
        .iter()
        .filter(|c| c.installs())
        .map(|c| c.argv[0].as_str())
        .collect();
    assert_eq!(installs, ["rustup", "cargo", "rustup"], "{calls:?}");

    let no_browser = [("SCISCORE_BROWSER_TESTS", "0")];
    assert_ok(&m.run("setup", &[], &no_browser), "setup without browser");
    let calls = m.take_log();
    assert_eq!(apt_installed(&calls), ["mesa-vulkan-drivers"]);
    assert!(!has_call(&calls, &["npm"]), "{calls:?}");
    assert!(has_call(&calls, &["rustup", "component", "add"]));

    assert_ok(&m.run("setup", &["browser"], &[]), "setup browser");
    let calls = m.take_log();
    let browser = ["chromium", "chromium-driver", "nodejs", "npm"];
    assert_eq!(apt_installed(&calls), browser);
    assert!(has_call(&calls, &["npm", "ci"]));

    let out = m.run("setup", &["everything"], &[]);
    assert!(!out.status.success());
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn readme_test_command_on_a_fresh_root_machine() {
    // Debian 12 as root has no sudo: the install must not depend on it.
    let m = Machine::new(0, false, State::Fresh);
    let out = m.run("test", &[], &[]);
    assert_ok(&out, "scripts/test on a fresh machine as root");
    let calls = m.take_log();
    // scripts/test-wasm and scripts/serve, which it calls, find everything installed.
    assert_eq!(apt_installed(&calls), DEBIAN_PACKAGES);
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with(&["cargo", "install"]))
            .count(),
        1
    );
    assert!(has_call(&calls, &["cargo", "test", "--all-targets"]));
    assert!(has_call(
        &calls,
        &["cargo", "test", "--target", "wasm32-unknown-unknown"]
    ));
    assert!(has_call(&calls, &["wasm-bindgen", "--target", "web"]));
    assert!(has_call(&calls, &["node", "--test"]));
}

#[test]
fn test_wasm_and_serve_on_a_fresh_root_machine() {
    let m = Machine::new(0, false, State::Fresh);
    assert_ok(&m.run("test-wasm", &[], &[]), "scripts/test-wasm");
    let calls = m.take_log();
    assert!(apt_installed(&calls).contains(&"chromium-driver".to_string()));
    assert!(has_call(
        &calls,
        &["cargo", "test", "--target", "wasm32-unknown-unknown"]
    ));

    let m = Machine::new(0, false, State::Fresh);
    assert_ok(
        &m.run("serve", &["--build-only"], &[]),
        "scripts/serve --build-only",
    );
    let calls = m.take_log();
    assert!(
        apt_calls(&calls).is_empty(),
        "serve needs no Debian package: {calls:?}"
    );
    assert!(has_call(
        &calls,
        &["rustup", "target", "add", "wasm32-unknown-unknown"]
    ));
    assert!(has_call(&calls, &["wasm-bindgen", "--target", "web"]));
}
