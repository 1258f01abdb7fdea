//! The protocol the host agent (`rotator-agent`) and entra-rotator's server speak.
