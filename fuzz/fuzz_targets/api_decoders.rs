//! Public API bodies as the server decodes them: job specs (one or a batch) with validation,
//! flow run requests, flow texts. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zenith_model::JobSpec;
use zenith_protocol::flows::{FlowText, RunRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<JobSpec>(data) {
        let _ = spec.validate();
    }
    if let Ok(specs) = serde_json::from_slice::<Vec<JobSpec>>(data) {
        for s in specs {
            let _ = s.validate();
        }
    }
    if let Ok(r) = serde_json::from_slice::<RunRequest>(data) {
        if let Some(text) = r.flow {
            let _ = zenith_flowspec::parse_yaml(&text);
        }
    }
    let _ = serde_json::from_slice::<FlowText>(data);
});
