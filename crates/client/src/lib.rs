//! zenith-client
