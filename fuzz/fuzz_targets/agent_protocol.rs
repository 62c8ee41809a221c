//! Agent protocol messages, both directions: registration, reports, the framed log upload the
//! server parses, and the NDJSON stream lines the agent parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zenith_protocol::agent::{
    decode_log_frames, RegisterRequest, RegisterResponse, ReportRequest, ReportResponse,
    StreamMessage,
};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<RegisterRequest>(data);
    let _ = serde_json::from_slice::<ReportRequest>(data);
    let _ = serde_json::from_slice::<RegisterResponse>(data);
    let _ = serde_json::from_slice::<ReportResponse>(data);
    for line in data.split(|b| *b == b'\n') {
        let _ = serde_json::from_slice::<StreamMessage>(line);
    }
    if let Ok(frames) = decode_log_frames(data) {
        for (f, bytes) in frames {
            assert_eq!(bytes.len(), f.len as usize, "a frame's bytes match its header");
        }
    }
});
