//! The flow spec parser and validator: any text must give a spec or an error, never a panic,
//! and a spec that validates must render its templates without one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use zenith_flowspec::{check, parse_yaml, Templates};

fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(Templates::new)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = parse_yaml(text) {
        if check(&spec, templates()).is_ok() {
            let ctx = zenith_flowspec::template::to_value(&serde_json::json!({
                "params": spec.params, "run": {"id": "1", "name": spec.name}, "steps": {}
            }));
            for s in &spec.steps {
                for a in s.run.iter().flatten() {
                    let _ = templates().render(a, &ctx);
                }
                if let Some(script) = &s.script {
                    let _ = templates().render_script(script, &ctx);
                }
                if let Some(w) = &s.when {
                    let _ = templates().eval(w, &ctx);
                }
            }
        }
    }
});
