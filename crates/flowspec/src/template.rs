//! `{{ ... }}` templates and `when`/`forEach` expressions of flows, on minijinja: strict about
//! undefined names, bounded by fuel, no file or network access. Values substitute into whole
//! argv elements or env values. In `script` text a value never becomes shell code: each
//! `{{ ... }}` turns into a reference to the environment variable `ZENITH_VALUE_<n>` that
//! carries the value, written to suit its quoting (see [`place_references`]).

use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};
use std::collections::HashSet;

/// Instructions one evaluation may spend before it is stopped.
const FUEL: u64 = 100_000;
/// Longest rendered string.
pub const MAX_RENDERED: usize = 1 << 20;

/// Why a template or expression could not be compiled, rendered or evaluated. The engine
/// keeps the text (a step's failure reason), the checker prefixes it with `template: `.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// minijinja refused it: syntax, an undefined name, out of fuel. Shown on one line
    /// (minijinja's message and detail); it is the message, not also a `source`, so a chain
    /// printer does not repeat it.
    #[error("{}", describe(.0))]
    Eval(minijinja::Error),
    #[error("rendered text is larger than {MAX_RENDERED} bytes")]
    TooLarge,
    /// A `forEach` string that looks like a JSON list is not one.
    #[error("forEach: not a JSON list: {0}")]
    ItemsNotJson(serde_json::Error),
    /// A `forEach` value that has no JSON form.
    #[error("forEach: {0}")]
    ItemsUnrepresentable(serde_json::Error),
    #[error("forEach must give a list, not {0}")]
    ItemsNotList(serde_json::Value),
}

/// The template environments; build once and share.
pub struct Templates {
    plain: Environment<'static>,
    shell: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

fn base() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_filter("fromjson", |s: String| -> Result<Value, minijinja::Error> {
        serde_json::from_str::<serde_json::Value>(&s)
            .map(|v| to_value(&v))
            .map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("fromjson: {e}"),
                )
            })
    });
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env
}

/// A template context or value from anything serde can serialize.
pub fn to_value<T: serde::Serialize>(v: &T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// Environment variables carrying the values of a rendered script: `ZENITH_VALUE_0`, ...
pub const SCRIPT_VALUE_PREFIX: &str = "ZENITH_VALUE_";

/// Private-use characters around a value's number while a script renders.
const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';

/// Replaces each value marker with a reference to its variable that works where it stands:
/// `${ZENITH_VALUE_n}` outside quotes and inside double quotes, and `'"${ZENITH_VALUE_n}"'`
/// inside single quotes (closing, expanding, reopening), so `echo '{{ x }}'` prints the value.
pub fn place_references(text: &str) -> String {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut out = String::with_capacity(text.len());
    let mut q = Quote::None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            MARK_OPEN => {
                let n: String = chars.by_ref().take_while(|&d| d != MARK_CLOSE).collect();
                let var = format!("${{{SCRIPT_VALUE_PREFIX}{n}}}");
                if q == Quote::Single {
                    out.push_str(&format!("'\"{var}\"'"));
                } else {
                    out.push_str(&var);
                }
            }
            '\\' if q != Quote::Single => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '\'' if q == Quote::None => {
                q = Quote::Single;
                out.push(c);
            }
            '\'' if q == Quote::Single => {
                q = Quote::None;
                out.push(c);
            }
            '"' if q == Quote::None => {
                q = Quote::Double;
                out.push(c);
            }
            '"' if q == Quote::Double => {
                q = Quote::None;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

thread_local! {
    /// Values collected while one script renders on this thread.
    static SCRIPT_VALUES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Templates {
    pub fn new() -> Self {
        let plain = base();
        let mut shell = base();
        shell.set_formatter(|out, _state, value| {
            let text = if value.is_none() || value.is_undefined() {
                String::new()
            } else {
                value.to_string()
            };
            let n = SCRIPT_VALUES.with(|v| {
                let mut v = v.borrow_mut();
                v.push(text);
                v.len() - 1
            });
            // A marker, replaced by a reference that suits its quoting once the text is whole.
            write!(out, "{MARK_OPEN}{n}{MARK_CLOSE}")
                .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure))
        });
        Templates { plain, shell }
    }

    /// Compiles a template and returns the dotted names it reads (`params.x`, `steps.a.outputs.p`).
    pub fn names_in_template(&self, source: &str) -> Result<HashSet<String>, TemplateError> {
        let t = self
            .plain
            .template_from_str(source)
            .map_err(TemplateError::Eval)?;
        Ok(t.undeclared_variables(true))
    }

    /// Compiles an expression (`{{ }}` around it optional) and returns the names it reads.
    pub fn names_in_expression(&self, source: &str) -> Result<HashSet<String>, TemplateError> {
        let e = self
            .plain
            .compile_expression(strip_braces(source))
            .map_err(TemplateError::Eval)?;
        Ok(e.undeclared_variables(true))
    }

    /// Renders a template for an argv element, env value or cwd.
    pub fn render(&self, source: &str, ctx: &Value) -> Result<String, TemplateError> {
        if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
            return Ok(source.to_string());
        }
        let out = self
            .plain
            .render_str(source, ctx)
            .map_err(TemplateError::Eval)?;
        bounded(out)
    }

    /// Renders `script` text: every `{{ value }}` becomes `${ZENITH_VALUE_<n>}`; returns the
    /// text and the values, the n-th for `ZENITH_VALUE_<n>`.
    pub fn render_script(
        &self,
        source: &str,
        ctx: &Value,
    ) -> Result<(String, Vec<String>), TemplateError> {
        SCRIPT_VALUES.with(|v| v.borrow_mut().clear());
        let out = self
            .shell
            .render_str(source, ctx)
            .map_err(TemplateError::Eval);
        let values = SCRIPT_VALUES.with(|v| std::mem::take(&mut *v.borrow_mut()));
        Ok((bounded(place_references(&out?))?, values))
    }

    /// Evaluates an expression.
    pub fn eval(&self, source: &str, ctx: &Value) -> Result<Value, TemplateError> {
        let e = self
            .plain
            .compile_expression(strip_braces(source))
            .map_err(TemplateError::Eval)?;
        e.eval(ctx).map_err(TemplateError::Eval)
    }
}

fn bounded(out: String) -> Result<String, TemplateError> {
    if out.len() > MAX_RENDERED {
        Err(TemplateError::TooLarge)
    } else {
        Ok(out)
    }
}

/// `{{ x }}` -> `x`; anything else unchanged.
pub fn strip_braces(s: &str) -> &str {
    let t = s.trim();
    match t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("{{") => inner.trim(),
        _ => t,
    }
}

/// One line: minijinja's message with its detail, without the debug dump.
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(d) = e.detail() {
        if !s.contains(d) {
            s.push_str(": ");
            s.push_str(d);
        }
    }
    s
}

/// Turns a `forEach` expression's value into items: a list as is, a string holding a JSON
/// array parsed, any other string split into non-empty lines.
pub fn items_of(v: &Value) -> Result<Vec<serde_json::Value>, TemplateError> {
    if let Some(s) = v.as_str() {
        let t = s.trim();
        if t.starts_with('[') {
            return serde_json::from_str::<Vec<serde_json::Value>>(t)
                .map_err(TemplateError::ItemsNotJson);
        }
        return Ok(t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::Value::String(l.to_string()))
            .collect());
    }
    let json = serde_json::to_value(v).map_err(TemplateError::ItemsUnrepresentable)?;
    match json {
        serde_json::Value::Array(items) => Ok(items),
        other => Err(TemplateError::ItemsNotList(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_quotes() {
        let t = Templates::new();
        let ctx = to_value(&serde_json::json!({"params": {"x": "a b; rm -rf /'"}}));
        assert_eq!(t.render("{{ params.x }}", &ctx).unwrap(), "a b; rm -rf /'");
        let (text, values) = t
            .render_script("echo \"{{ params.x }}\" {{ 1 + 1 }}", &ctx)
            .unwrap();
        assert_eq!(text, "echo \"${ZENITH_VALUE_0}\" ${ZENITH_VALUE_1}");
        assert_eq!(values, vec!["a b; rm -rf /'".to_string(), "2".to_string()]);
        let (text, _) = t
            .render_script(
                "echo '<{{ params.x }}>' \"{{ params.x }}\" \\'{{ params.x }}",
                &ctx,
            )
            .unwrap();
        assert_eq!(
            text,
            "echo '<'\"${ZENITH_VALUE_0}\"'>' \"${ZENITH_VALUE_1}\" \\'${ZENITH_VALUE_2}"
        );
        assert!(t.render("{{ params.y }}", &ctx).is_err());
        assert!(!t.eval("params.x == 'a'", &ctx).unwrap().is_true());
    }

    #[test]
    fn missing_outputs_can_default() {
        let t = Templates::new();
        let ctx =
            to_value(&serde_json::json!({"steps": {"a": {"state": "skipped", "outputs": {}}}}));
        assert!(t.render("{{ steps.a.outputs.p }}", &ctx).is_err());
        assert_eq!(
            t.render("{{ steps.a.outputs.p | default('none') }}", &ctx)
                .unwrap(),
            "none"
        );
        assert!(!t
            .eval("steps.a.outputs.p is defined", &ctx)
            .unwrap()
            .is_true());
    }

    #[test]
    fn fuel_stops_runaway_templates() {
        let t = Templates::new();
        let ctx = to_value(&serde_json::json!({}));
        let e = t
            .render(
                "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}",
                &ctx,
            )
            .unwrap_err();
        assert!(e.to_string().contains("fuel"), "{e}");
    }

    #[test]
    fn names_are_nested() {
        let t = Templates::new();
        let n = t
            .names_in_template("{{ steps.a.outputs.p }} {{ params.q | upper }}")
            .unwrap();
        assert!(
            n.contains("steps.a.outputs.p") && n.contains("params.q"),
            "{n:?}"
        );
    }

    #[test]
    fn items_from_values() {
        let t = Templates::new();
        let ctx = to_value(&serde_json::json!({"s": "[1, 2]", "l": "a\nb\n\n"}));
        assert_eq!(items_of(&t.eval("s", &ctx).unwrap()).unwrap().len(), 2);
        assert_eq!(
            items_of(&t.eval("{{ l }}", &ctx).unwrap()).unwrap().len(),
            2
        );
        assert_eq!(
            items_of(&t.eval("[1,2,3]", &ctx).unwrap()).unwrap().len(),
            3
        );
        assert!(items_of(&t.eval("3", &ctx).unwrap()).is_err());
    }
}
