//! Wire types: the public API v1 (`api`) and the agent protocol v1 (`agent`), with the one
//! conversion from model records to API views.

pub mod agent;
pub mod api;
pub mod flows;
pub mod tenancy;
