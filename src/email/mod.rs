//! The emails of an incident, and the signed ack/resolve links they carry.

pub mod token;
