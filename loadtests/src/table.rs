//! The result table the hostile and fault suites print: one row per case.

/// One row: the case, what it must do, what it did, and whether that is a pass.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: String,
    pub expected: String,
    pub observed: String,
    pub passed: bool,
}

/// Prints the table and a summary line; the number of failed rows.
pub fn print(rows: &[Row]) -> usize {
    let width = rows.iter().map(|r| r.case.len()).max().unwrap_or(4).max(4);
    let ewidth = rows.iter().map(|r| r.expected.len()).max().unwrap_or(8).max(8);
    println!(
        "{:<width$}  {:<ewidth$}  {:<4}  observed",
        "case", "expected", "pass"
    );
    for r in rows {
        println!(
            "{:<width$}  {:<ewidth$}  {:<4}  {}",
            r.case,
            r.expected,
            if r.passed { "ok" } else { "FAIL" },
            r.observed
        );
    }
    let failed = rows.iter().filter(|r| !r.passed).count();
    println!(
        "\n{} cases, {} passed, {failed} failed",
        rows.len(),
        rows.len() - failed
    );
    failed
}
