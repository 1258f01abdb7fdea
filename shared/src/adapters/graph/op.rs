//! What a Graph request is: what it does, what it needs, and how far it may be retried. Both the
//! sending (`request.rs`) and the reading of refusals (`failure.rs`) go by it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    Read,
    Write,
}

/// What a request does, so its failures can say so and be retried only as far as is safe.
#[derive(Debug, Clone)]
pub(super) struct Op {
    /// For messages and logs, e.g. `addPassword on application …`.
    pub(super) what: String,
    /// What a 404 means is missing.
    pub(super) object: String,
    pub(super) access: Access,
    /// Sending it twice is harmless, so a 5xx, a timeout or a dropped connection may be retried.
    pub(super) replayable: bool,
    /// A listing, possibly on a delta link: an expired-delta answer is [`crate::Error::DeltaExpired`].
    pub(super) listing: bool,
    /// Its answer may hold a secret: nothing from it, not even an error text, is repeated.
    pub(super) sensitive: bool,
    /// A throttling or concurrency refusal is handed back at once, with how long to wait, instead
    /// of being waited out here: the caller re-queues the work with that delay, so no worker is
    /// held while Graph asks for patience.
    pub(super) hand_back_refusals: bool,
}

impl Op {
    pub(super) fn read(what: String, object: String) -> Self {
        Self {
            what,
            object,
            access: Access::Read,
            replayable: true,
            listing: false,
            sensitive: false,
            hand_back_refusals: false,
        }
    }
    pub(super) fn write(what: String, object: String) -> Self {
        Self {
            what,
            object,
            access: Access::Write,
            replayable: true,
            listing: false,
            sensitive: false,
            hand_back_refusals: false,
        }
    }
    pub(super) fn not_replayable(mut self) -> Self {
        self.replayable = false;
        self
    }
    pub(super) fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    pub(super) fn hand_back_refusals(mut self) -> Self {
        self.hand_back_refusals = true;
        self
    }
    pub(super) fn listing(mut self) -> Self {
        self.listing = true;
        self
    }
    /// The Graph application permission the call needs.
    pub(super) fn permission(&self) -> &'static str {
        match self.access {
            Access::Read => "Application.Read.All",
            Access::Write => "Application.ReadWrite.All",
        }
    }
}
