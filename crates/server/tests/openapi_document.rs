//! The checked-in `docs/openapi.json` is the description the server serves: regenerate it with
//! `ZENITH_WRITE_OPENAPI=1 cargo test -p zenith-server --test openapi_document`.

use std::path::PathBuf;

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn docs_openapi_json_is_the_generated_description() {
    let made = zenith_server::openapi::document_json();
    let path = checked_in();
    if std::env::var_os("ZENITH_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, made).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == made,
        "docs/openapi.json differs from the handlers' description; regenerate it with \
         ZENITH_WRITE_OPENAPI=1 cargo test -p zenith-server --test openapi_document"
    );
}

#[test]
fn the_description_is_openapi_3_1_with_every_body_defined() {
    let doc: serde_json::Value =
        serde_json::from_str(zenith_server::openapi::document_json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    // Every $ref points at a defined schema.
    let text = zenith_server::openapi::document_json();
    for part in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(schemas.contains_key(name), "undefined schema {name}");
    }
    for needed in [
        "JobSpec",
        "JobView",
        "Event",
        "ErrorBody",
        "RunView",
        "Resources",
    ] {
        assert!(schemas.contains_key(needed), "{needed} missing");
    }
}
