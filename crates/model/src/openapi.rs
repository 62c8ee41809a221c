//! OpenAPI schemas of the types whose JSON form is hand-written (text forms, sizes, fractional
//! cores): what `zenith-protocol`'s description of `/api/v1` says about them.

use crate::{ArrayRange, Constraint, Dependency, DurationMs, Resources};
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

fn typed(t: Type, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(t))
        .description(Some(description))
}

/// A string (in a text form the description gives) or a non-negative integer.
fn text_or_count(description: &str, integer_is: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .description(Some(description))
        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)))
        .item(
            typed(Type::Integer, integer_is)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::UInt64,
                )))
                .minimum(Some(0)),
        )
        .into()
}

impl PartialSchema for DurationMs {
    fn schema() -> RefOr<Schema> {
        text_or_count(
            "A duration: \"30s\", \"1m 30s\", \"250ms\", \"2h\", or whole seconds; answers give the text form",
            "whole seconds",
        )
    }
}

impl ToSchema for DurationMs {
    fn name() -> Cow<'static, str> {
        "Duration".into()
    }
}

/// A type written as one string in a documented form.
macro_rules! text_schema {
    ($t:ty, $name:literal, $description:literal) => {
        impl PartialSchema for $t {
            fn schema() -> RefOr<Schema> {
                typed(Type::String, $description).into()
            }
        }

        impl ToSchema for $t {
            fn name() -> Cow<'static, str> {
                $name.into()
            }
        }
    };
}

text_schema!(
    Constraint,
    "Constraint",
    "A node label requirement: `K=V`, `K!=V`, `K in (a,b)`, `K exists`, `K~V` (contains, any case) or `K>=N` (a number or size)"
);
text_schema!(
    ArrayRange,
    "ArrayRange",
    "Task indices: `1-1000`, `1-99:2` (every second), `1,4-7`, with `%N` for at most N running at once"
);
text_schema!(
    Dependency,
    "Dependency",
    "A job that must end first: `ID`, `ID:ok`, `ID:fail` or `ID:any`"
);

impl PartialSchema for Resources {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .description(Some("A resource request or capacity"))
            .property(
                "cpus",
                typed(
                    Type::Number,
                    "CPU cores, fractional (0.5); 1 when not given",
                )
                .minimum(Some(0)),
            )
            .property(
                "memory",
                text_or_count("Memory: bytes, or a size such as 512M or 2G", "bytes"),
            )
            .property("gpus", typed(Type::Integer, "GPUs").minimum(Some(0)))
            .property(
                "custom",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Object))
                    .description(Some(
                        "Named counts offered by agents (--resource NAME=COUNT)",
                    ))
                    .additional_properties(Some(
                        ObjectBuilder::new()
                            .schema_type(SchemaType::Type(Type::Integer))
                            .minimum(Some(0)),
                    )),
            )
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ))
            .into()
    }
}

impl ToSchema for Resources {
    fn name() -> Cow<'static, str> {
        "Resources".into()
    }
}
