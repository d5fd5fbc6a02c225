//! Every error the signaling server writes, as `{"type":"error","code":...}`. The table, with
//! triggers, is L7 in `fixtures/logrtc/CLARIFICATIONS.md`.

/// A refusal. The connection stays open unless [`ErrorCode::close_code`] says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object.
    BadJson,
    /// No string `type`, or a known type with a missing or ill-typed field.
    BadMessage,
    /// A `type` the server does not know.
    UnknownType,
    /// Anything but `register` and `ping` before `register`.
    NotRegistered,
    /// A second `register` on a registered connection.
    AlreadyRegistered,
    /// A `watch` or `unwatch` from a producer.
    WrongRole,
    /// A `watch` of a producer that is not registered.
    UnknownProducer,
    /// A relay whose `to` is not registered.
    UnknownRecipient,
    /// A relay between two clients that are not a producer and a consumer watching it.
    NotPaired,
    /// A binary frame: the protocol is JSON text.
    UnsupportedFrame,
    /// More frames than the rate limit allows. Closes (1008).
    RateLimited,
    /// [`super::MAX_CLIENTS`] are registered.
    ServerFull,
    /// Another connection registered the same `client_id`; this one is closed (4001).
    Replaced,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        Self::BadJson,
        Self::BadMessage,
        Self::UnknownType,
        Self::NotRegistered,
        Self::AlreadyRegistered,
        Self::WrongRole,
        Self::UnknownProducer,
        Self::UnknownRecipient,
        Self::NotPaired,
        Self::UnsupportedFrame,
        Self::RateLimited,
        Self::ServerFull,
        Self::Replaced,
    ];

    /// The string written in `code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadMessage => "bad_message",
            Self::UnknownType => "unknown_type",
            Self::NotRegistered => "not_registered",
            Self::AlreadyRegistered => "already_registered",
            Self::WrongRole => "wrong_role",
            Self::UnknownProducer => "unknown_producer",
            Self::UnknownRecipient => "unknown_recipient",
            Self::NotPaired => "not_paired",
            Self::UnsupportedFrame => "unsupported_frame",
            Self::RateLimited => "rate_limited",
            Self::ServerFull => "server_full",
            Self::Replaced => "replaced",
        }
    }

    /// The close code that follows the error, for the errors that end the connection.
    pub fn close_code(self) -> Option<u16> {
        match self {
            Self::RateLimited => Some(1008),
            Self::Replaced => Some(4001),
            _ => None,
        }
    }
}
