//! zenith-protocol
