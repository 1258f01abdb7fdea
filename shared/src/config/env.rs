//! Where the configuration reads the environment: the [`Env`] trait, so tests hand in a map, and
//! [`ProcessEnv`], the process's own, which is the one place `std::env::var` is called.

use std::collections::BTreeMap;

/// Where the environment is read: only here, once, at start-up.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    #[allow(clippy::disallowed_methods)] // the one home of environment reads
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}
