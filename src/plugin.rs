//! What a check's exit code and output mean: the `check_style` of a service, the verdict of one
//! run, the summary line and the performance data of monitoring-plugins (Nagios) checks.
//!
//! The plugin contract: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; the first line of output
//! is `TEXT | PERFDATA`, later lines are long text and may carry more perfdata after a `|`.
//! Everything here is pure and never fails: output that does not follow the contract gives an
//! empty summary or no perfdata, and the verdict comes from the exit code alone.

use crate::model::Exit;

/// Longest summary kept, in bytes (printable ASCII, so also in characters): long enough for a
/// plugin's status line, short enough for HAProxy's check description.
pub const SUMMARY_MAX: usize = 160;
/// Perfdata labels exported per service; the rest of a run's perfdata is ignored.
pub const PERF_MAX: usize = 32;
/// Longest perfdata label kept; longer ones are ignored (a label is a metric label value).
const LABEL_MAX: usize = 64;

/// How a check's exit code is read (`check_style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckStyle {
    /// 0 passes, anything else fails.
    #[default]
    Plain,
    /// monitoring-plugins: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (and anything else) fail.
    Nagios,
}

impl CheckStyle {
    /// The value of the `check_style` key, any case.
    /// The values `check_style` takes.
    pub const WORDS: &'static [&'static str] = &["plain", "nagios"];

    pub fn parse(v: &str) -> Result<CheckStyle, &'static str> {
        match v.to_ascii_lowercase().as_str() {
            "plain" => Ok(CheckStyle::Plain),
            "nagios" => Ok(CheckStyle::Nagios),
            _ => Err("expected plain or nagios"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckStyle::Plain => "plain",
            CheckStyle::Nagios => "nagios",
        }
    }
}

/// What one run says about the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Passing, but the check asks for the node to take less traffic.
    Warning,
    Failed,
}

impl Verdict {
    pub fn of(style: CheckStyle, exit: &Exit) -> Verdict {
        match (style, exit) {
            (_, Exit::Code(0)) => Verdict::Ok,
            (CheckStyle::Nagios, Exit::Code(1)) => Verdict::Warning,
            _ => Verdict::Failed,
        }
    }

    pub fn passed(self) -> bool {
        self != Verdict::Failed
    }
}

/// The check's own words: the first line up to `|`, cleaned so that it can go on an HTTP
/// status line and after the agent's `#` (printable ASCII only, runs of blanks as one space,
/// at most [`SUMMARY_MAX`] bytes). Empty when the check printed nothing usable.
pub fn summary(first_line: &str) -> String {
    let text = first_line.lines().next().unwrap_or("");
    let text = text.split('|').next().unwrap_or("");
    let mut out = String::with_capacity(text.len().min(SUMMARY_MAX));
    for c in text.chars() {
        if out.len() >= SUMMARY_MAX {
            break;
        }
        let c = match c {
            ' '..='~' => c,
            // Tabs and the like read as blanks; other bytes (binary, non-ASCII) as '?'.
            c if c.is_whitespace() => ' ',
            _ => '?',
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// One performance datum: `'label'=value[UOM];warn;crit;min;max`, the value and its unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    /// As printed: "", "s", "%", "B", "KB", "MB", "GB", "TB", "us", "ms", "c".
    pub uom: String,
}

/// The perfdata of a run: after `|` on the first line, and after `|` in the long text (later
/// lines). At most [`PERF_MAX`] data, the first label of a name wins; anything malformed is
/// skipped and logged at debug, never an error.
pub fn perfdata(service: &str, first_line: &str, rest: &str) -> Vec<Perf> {
    let first = first_line.lines().next().unwrap_or("");
    let mut text = String::new();
    if let Some((_, p)) = first.split_once('|') {
        text.push_str(p);
    }
    if let Some((_, p)) = rest.split_once('|') {
        text.push(' ');
        text.push_str(p);
    }
    let mut out: Vec<Perf> = Vec::new();
    for item in split_items(&text) {
        match parse_item(&item) {
            Some(p) if out.iter().any(|o| o.label == p.label) => {}
            Some(p) if out.len() >= PERF_MAX => {
                tracing::debug!(
                    psentinel_service = service,
                    "{service}: perfdata '{}' ignored: more than {PERF_MAX} labels",
                    p.label
                );
            }
            Some(p) => out.push(p),
            None => tracing::debug!(
                psentinel_service = service,
                "{service}: malformed perfdata ignored: {:?}",
                item.chars().take(80).collect::<String>()
            ),
        }
    }
    out
}

/// Splits on blanks, except inside single quotes (labels may hold spaces: `'/ free'=5MB`).
/// A `''` inside quotes is a literal quote, as in the plugin guidelines.
fn split_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if quoted && chars.peek() == Some(&'\'') => {
                cur.push('\'');
                cur.push('\'');
                chars.next();
            }
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    items.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

fn parse_item(item: &str) -> Option<Perf> {
    let (label, rest) = if let Some(q) = item.strip_prefix('\'') {
        // The label ends at the quote followed by '='.
        let end = q.find("'=")?;
        (q[..end].replace("''", "'"), &q[end + 2..])
    } else {
        let (l, r) = item.split_once('=')?;
        (l.to_string(), r)
    };
    if label.is_empty()
        || label.len() > LABEL_MAX
        || !label.chars().all(|c| (' '..='~').contains(&c))
    {
        return None;
    }
    let value = rest.split(';').next()?;
    let num_end = value
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(value.len());
    // "U" (undetermined) and anything that is not a finite number are skipped.
    let v: f64 = value[..num_end]
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())?;
    let uom = &value[num_end..];
    let known = ["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"];
    if !known.contains(&uom) {
        return None;
    }
    Some(Perf {
        label,
        value: v,
        uom: uom.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_by_style() {
        use CheckStyle::*;
        assert_eq!(Verdict::of(Plain, &Exit::Code(0)), Verdict::Ok);
        assert_eq!(Verdict::of(Plain, &Exit::Code(1)), Verdict::Failed);
        assert_eq!(Verdict::of(Nagios, &Exit::Code(1)), Verdict::Warning);
        for bad in [
            Exit::Code(2),
            Exit::Code(3),
            Exit::Code(77),
            Exit::Signal(9),
            Exit::TimedOut,
            Exit::CannotStart("x".into()),
        ] {
            assert_eq!(Verdict::of(Nagios, &bad), Verdict::Failed, "{bad:?}");
        }
        assert!(Verdict::Warning.passed() && !Verdict::Failed.passed());
    }

    #[test]
    fn summary_is_the_first_line_cleaned_and_bounded() {
        assert_eq!(
            summary("DISK WARNING - free space: / 850 MB (8%) | /=9000MB;;;0;10000\nmore"),
            "DISK WARNING - free space: / 850 MB (8%)"
        );
        assert_eq!(summary(""), "");
        assert_eq!(summary("\n\nlater"), "");
        assert_eq!(summary("a\tb\r\x1b[31mc\u{e9}"), "a b ?[31mc?");
        assert_eq!(summary("   lots    of   blanks   "), "lots of blanks");
        let long = "x".repeat(10_000);
        assert_eq!(summary(&long).len(), SUMMARY_MAX);
        let binary = String::from_utf8_lossy(&[0, 159, 146, 150, 255, b'o', b'k']).into_owned();
        assert!(summary(&binary).bytes().all(|b| (b' '..=b'~').contains(&b)));
    }

    #[test]
    fn perfdata_in_the_plugin_format() {
        let p = perfdata(
            "t",
            "DISK OK | '/ free'=850MB;900;950;0;10000 time=0.002s;;;0.000 load1=0.5",
            "long text\nmore | 'it''s'=3c x=1;2;3",
        );
        let got: Vec<(&str, f64, &str)> = p
            .iter()
            .map(|p| (p.label.as_str(), p.value, p.uom.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/ free", 850.0, "MB"),
                ("time", 0.002, "s"),
                ("load1", 0.5, ""),
                ("it's", 3.0, "c"),
                ("x", 1.0, "")
            ]
        );
    }

    #[test]
    fn malformed_perfdata_is_skipped() {
        let p = perfdata(
            "t",
            "OK | good=1 =2 nolabel 'open=3 bad=abc u=U w=5furlongs inf=inf x=1e999 ok2=-4.5%",
            "",
        );
        let labels: Vec<&str> = p.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["good"], "{p:?}");
        assert!(perfdata("t", "no pipe here", "nor here").is_empty());
        let p = perfdata("t", "OK | a=1 ok2=-4.5%", "");
        assert_eq!(p[1].value, -4.5);
    }

    #[test]
    fn perfdata_is_bounded_per_run() {
        let many: Vec<String> = (0..100).map(|i| format!("l{i}=1")).collect();
        let p = perfdata("t", &format!("OK | {} l0=9", many.join(" ")), "");
        assert_eq!(p.len(), PERF_MAX);
        assert_eq!(p[0].value, 1.0, "the first of a label wins");
    }
}
