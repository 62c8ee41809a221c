//! Table and JSON output for read verbs.

use crate::ordered::Value;
use clap::ValueEnum;

/// `-o`: a table (`wide`: with more columns where a verb has them), or the data as JSON or
/// YAML, times in RFC 3339 (each with its epoch milliseconds beside it as `<name>_ms`).
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Wide,
    Json,
    Yaml,
}

impl Format {
    /// JSON or YAML: the data, not a table.
    pub fn is_data(self) -> bool {
        matches!(self, Format::Json | Format::Yaml)
    }
}

/// Fields holding epoch milliseconds that are not named `*_at`.
const TIME_FIELDS: [&str; 5] = [
    "at",
    "last_heartbeat",
    "next_fire",
    "drain_deadline",
    "time",
];

/// Rewrites epoch-millisecond times (`*_at` and [`TIME_FIELDS`]) as RFC 3339 strings, and
/// keeps each number just after it as `<name>_ms`, at every depth.
pub fn rfc3339_times(v: &mut Value) {
    match v {
        Value::Object(fields) => {
            let mut out = Vec::with_capacity(fields.len());
            for (k, mut inner) in std::mem::take(fields) {
                let is_time = k.ends_with("_at") || TIME_FIELDS.contains(&k.as_str());
                // Beyond year 9999 is a sentinel ("never"), not a time: left as is.
                let ms = match &inner {
                    Value::Number(n) if is_time => n.as_u64().filter(|ms| *ms <= MAX_RFC3339_MS),
                    _ => None,
                };
                match ms {
                    Some(ms) => {
                        out.push((k.clone(), Value::String(rfc3339_ms(ms))));
                        out.push((format!("{k}_ms"), Value::Number(ms.into())));
                    }
                    None => {
                        rfc3339_times(&mut inner);
                        out.push((k, inner));
                    }
                }
            }
            *fields = out;
        }
        Value::Array(items) => items.iter_mut().for_each(rfc3339_times),
        _ => {}
    }
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// `2026-12-05T05:12:33.120Z` (times past [`MAX_RFC3339_MS`] are written as that).
pub fn rfc3339_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(MAX_RFC3339_MS));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Prints `v` as `format` says (JSON or YAML), times in RFC 3339.
pub fn data<T: serde::Serialize>(format: Format, v: &T) -> anyhow::Result<()> {
    let mut value = Value::of(v)?;
    rfc3339_times(&mut value);
    match format {
        Format::Yaml => {
            let text = serde_saphyr::to_string(&value)?;
            out!("{}", text.trim_end());
        }
        _ => out!("{}", serde_json::to_string_pretty(&value)?),
    }
    Ok(())
}

/// One record of a stream (events): a JSON line, or a YAML document.
pub fn data_line<T: serde::Serialize>(format: Format, v: &T) -> anyhow::Result<()> {
    let mut value = Value::of(v)?;
    rfc3339_times(&mut value);
    match format {
        Format::Yaml => out!("---\n{}", serde_saphyr::to_string(&value)?.trim_end()),
        _ => out!("{}", serde_json::to_string(&value)?),
    }
    Ok(())
}

/// Text from the server (names, commands, reasons, outputs) as it may be printed to a
/// terminal: control characters (escape sequences, carriage returns, newlines, tabs, C1
/// controls) are shown escaped (`\x1b`, `\n`), so a job cannot repaint the reader's screen
/// or break a table's rows. JSON output needs none of this: its encoder escapes them.
pub fn safe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A cell of a table: [`safe`], except that line breaks stay line breaks (a multi-line value
/// becomes a multi-line cell, not a broken row).
fn cell(s: &str) -> String {
    s.split('\n')
        .map(|line| safe(line.trim_end_matches('\r')).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints rows as aligned columns without borders (comfy-table): multi-line values become
/// multi-line cells; at a terminal, wide values wrap to its width instead of pushing the row
/// off the screen.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    use comfy_table::{presets::NOTHING, ContentArrangement, Table};
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().map(|h| h.to_string()));
    for r in rows {
        t.add_row(r.iter().map(|c| cell(c)));
    }
    let last = header.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
    }
    for line in t.lines() {
        out!("{}", line.trim_end());
    }
}

/// JSON (pretty), times in RFC 3339.
pub fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    data(Format::Json, v)
}

/// "3s ago", "2h ago" from two millisecond timestamps.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// A millisecond timestamp as UTC, e.g. `2026-12-05T05:12:33Z`.
pub fn when(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(MAX_RFC3339_MS));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// "1 step", "3 steps": a count with its noun in the right number.
pub fn count(n: u64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// A job's state as a verb phrase: "is queued", "is running", "succeeded", "failed",
/// "was cancelled".
pub fn job_state_phrase(s: zenith_model::JobState) -> &'static str {
    use zenith_model::JobState::*;
    match s {
        Queued => "is queued",
        Running => "is running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "was cancelled",
    }
}

pub fn bytes(b: u64) -> String {
    zenith_model::resources::format_bytes(b)
}

/// Milliseconds since the epoch, for "ago" columns in client output.
#[allow(clippy::disallowed_methods)] // client-side display only, not scheduling
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_become_rfc3339_with_the_epoch_beside() {
        let mut v = Value::of(&serde_json::json!({
            "id": 3, "created_at": 1_764_998_400_000u64, "finished_at": null,
            "attempts": [{"started_at": 1_764_998_401_500u64}], "last_heartbeat": 0
        }))
        .unwrap();
        rfc3339_times(&mut v);
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(v["created_at"], "2025-12-06T05:20:00.000Z");
        assert_eq!(v["created_at_ms"], 1_764_998_400_000u64);
        assert_eq!(v["attempts"][0]["started_at"], "2025-12-06T05:20:01.500Z");
        assert!(v["finished_at"].is_null());
        assert_eq!(v["id"], 3);
        assert_eq!(v["last_heartbeat"], "1970-01-01T00:00:00.000Z");
        let mut never = Value::of(&serde_json::json!({"drain_deadline": u64::MAX})).unwrap();
        rfc3339_times(&mut never);
        assert_eq!(
            never.get("drain_deadline"),
            Some(&Value::Number(u64::MAX.into()))
        );
        // Fields keep their order; the epoch follows its time.
        let mut order = Value::of(&serde_json::json!({"id": 1})).unwrap();
        if let Value::Object(f) = &mut order {
            f.push(("created_at".into(), Value::Number(5.into())));
            f.push(("name".into(), Value::String("n".into())));
        }
        rfc3339_times(&mut order);
        let text = serde_json::to_string(&order).unwrap();
        assert_eq!(
            text,
            r#"{"id":1,"created_at":"1970-01-01T00:00:00.005Z","created_at_ms":5,"name":"n"}"#
        );
        assert_eq!(rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(safe("plain name"), "plain name");
        assert_eq!(
            safe("\u{1b}[2J\u{1b}]0;pwned\u{7}"),
            "\\x1b[2J\\x1b]0;pwned\\x07"
        );
        assert_eq!(safe("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(safe("\u{9b}31m\u{7f}"), "\\x9b31m\\x7f");
        assert_eq!(safe("héllo ✓"), "héllo ✓");
    }
}
