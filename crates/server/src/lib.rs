//! zenith-server
