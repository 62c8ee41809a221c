//! zenith-store
