//! docs/compatibility.md stays consistent: every row of the per-applet tables has one known
//! state, and the summary counts at the top are those of the tables.
use std::collections::BTreeMap;

const STATES: [&str; 4] = ["done", "differs", "n/a", "in progress"];

/// The cells of a table row, honouring `\|` inside a cell.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .replace("\\|", "\u{0}")
        .split('|')
        .map(|c| c.replace('\u{0}', "|").trim().to_string())
        .collect()
}

#[test]
fn summary_counts_match_the_tables() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/compatibility.md"
    ))
    .unwrap();
    let mut section = String::new();
    let mut counted: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    let mut summary: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.to_string();
            continue;
        }
        if !line.starts_with('|') || line.starts_with("|---") {
            continue;
        }
        let c = cells(line);
        if section.is_empty() {
            // The summary: name | done | differs | n/a | in progress | rows
            let name = c[0].trim_matches('*').to_string();
            let nums: Vec<usize> = c[1..]
                .iter()
                .filter_map(|n| n.trim_matches('*').parse().ok())
                .collect();
            if nums.len() == 5 {
                assert_eq!(
                    nums[..4].iter().sum::<usize>(),
                    nums[4],
                    "summary row {name}"
                );
                summary.insert(name, [nums[0], nums[1], nums[2], nums[3]]);
            }
            continue;
        }
        if c.len() < 3 || c[1] == "State" {
            continue;
        }
        let i = STATES
            .iter()
            .position(|s| *s == c[1])
            .unwrap_or_else(|| panic!("{section}: row {line:?} has no known state"));
        counted.entry(section.clone()).or_default()[i] += 1;
    }
    let mut total = [0; 4];
    for (section, n) in &counted {
        // The summary row whose name is the longest prefix of the section title.
        let key = summary
            .keys()
            .filter(|k| section.to_lowercase().starts_with(&k.to_lowercase()))
            .max_by_key(|k| k.len())
            .unwrap_or_else(|| panic!("section {section} has no summary row"))
            .clone();
        assert_eq!(&summary[&key], n, "summary of {section}");
        for i in 0..4 {
            total[i] += n[i];
        }
    }
    assert_eq!(summary["total"], total, "total row");
}
