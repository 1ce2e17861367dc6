//! Writing a generated report into BENCHMARKS.md without losing what others
//! wrote there. The file is shared: `benches/mcp.rs` generates most
//! sections, `benches/memory.rs` one, and some are written by hand. Each
//! writer names the `## ` sections it owns; [`merge`] replaces those (in
//! place, or appended when new), drops owned ones the new report no longer
//! has, and keeps every other section where it was.
//!
//! Included by the benches with `#[path = "report.rs"] mod report;`; its
//! tests run with `rustc --edition 2021 --test benches/report.rs`.

use std::path::Path;

/// Writes `new` into the Markdown file at `path`, keeping the sections of
/// the old file that `owned` does not name.
pub fn write(path: &Path, new: &str, owned: &[&str]) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, merge(&old, new, owned))
}

/// Text before the first section, and the sections as (heading line, text
/// including the heading).
fn split(md: &str) -> (String, Vec<(String, String)>) {
    let mut pre = String::new();
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in md.split_inclusive('\n') {
        if line.starts_with("## ") {
            sections.push((line.trim_end().to_string(), String::new()));
        }
        match sections.last_mut() {
            Some((_, text)) => text.push_str(line),
            None => pre.push_str(line),
        }
    }
    (pre, sections)
}

/// The old report with the owned sections replaced by those of `new`; the
/// preamble of `new` replaces the old one unless it is empty.
pub fn merge(old: &str, new: &str, owned: &[&str]) -> String {
    let (old_pre, old_sections) = split(old);
    let (new_pre, new_sections) = split(new);
    let fresh = |h: &str| new_sections.iter().find(|(n, _)| n == h).map(|(_, t)| t);
    let mut out = if new_pre.trim().is_empty() {
        old_pre
    } else {
        new_pre.clone()
    };
    // Sections are separated by a blank line whoever wrote them.
    let push = |out: &mut String, text: &str| {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(text);
    };
    for (heading, text) in &old_sections {
        match fresh(heading) {
            Some(t) => push(&mut out, t),
            None if owned.contains(&heading.as_str()) => {}
            None => push(&mut out, text),
        }
    }
    for (heading, text) in &new_sections {
        if !old_sections.iter().any(|(h, _)| h == heading) {
            push(&mut out, text);
        }
    }
    out
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// An RFC 3339 time (`session::rfc3339`, the server's own formatter) as
/// `YYYY-MM-DD HH:MM UTC`, for the report's date line. It takes the text
/// rather than the clock so this file stays free of the crate and its tests
/// still build with plain `rustc`.
pub fn report_minute(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn report_minute_keeps_date_and_minute() {
        assert_eq!(
            super::report_minute("2026-12-02T11:10:16.440Z"),
            "2026-12-02 11:10 UTC"
        );
    }

    #[test]
    fn owned_sections_are_replaced_and_others_kept() {
        let old = "# B\n\nold intro\n\n## Cold start\n\nold cold\n\n## Container image\n\nby hand\n\n## Notes\n\nstale\n\n## Memory\n\nold memory\n";
        let new = "# B\n\nnew intro\n\n## Cold start\n\nnew cold\n";
        let owned = ["## Cold start", "## Notes"];
        let merged = super::merge(old, new, &owned);
        assert_eq!(
            merged,
            "# B\n\nnew intro\n\n## Cold start\n\nnew cold\n\n## Container image\n\nby hand\n\n## Memory\n\nold memory\n"
        );
        // A section-only report keeps the preamble and replaces its section in place.
        let merged = super::merge(old, "## Memory\n\nnew memory\n", &["## Memory"]);
        assert!(merged.starts_with("# B\n\nold intro\n"), "{merged}");
        assert!(merged.ends_with("## Memory\n\nnew memory\n"), "{merged}");
        assert!(merged.contains("by hand") && merged.contains("old cold"));
        // A new section is appended.
        let merged = super::merge("# B\n\n## A\n\na\n", "## Z\n\nz\n", &["## Z"]);
        assert_eq!(merged, "# B\n\n## A\n\na\n\n## Z\n\nz\n");
    }
}
