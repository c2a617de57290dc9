//! Being built in its own issue; empty until it lands.
