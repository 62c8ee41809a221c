//! zenith-agent
