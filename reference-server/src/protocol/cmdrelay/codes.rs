//! Every `code` the server writes. The table, with triggers, is in
//! `fixtures/cmdrelay/CLARIFICATIONS.md` (C4).

/// `code` of an accepted `init`, of `Heartbeat`, and of `checkDevice` when others are present.
pub const OK: &str = "1";
/// `code` of `checkDevice` when the client is alone in its room.
pub const ALONE: &str = "0";

/// A refusal. Its code is written in `code`, its name in `extra.error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, not an object, `cmd` missing or not a string, `extra` not an object.
    ParseError,
    /// `init` with a token that is unknown, expired, revoked, or missing. Closes (1008).
    InvalidToken,
    /// Anything but `init` before the connection is initialised.
    NotInitialized,
    /// A `cmd` the server does not know.
    UnknownCommand,
    /// A second `init` on an initialised connection.
    AlreadyInitialized,
    /// A binary frame: the protocol is JSON text.
    UnsupportedFrame,
    /// More messages than the rate limit allows. Closes (1008).
    RateLimited,
    /// The token store could not be read. Closes (1011).
    StoreUnavailable,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        Self::ParseError,
        Self::InvalidToken,
        Self::NotInitialized,
        Self::UnknownCommand,
        Self::AlreadyInitialized,
        Self::UnsupportedFrame,
        Self::RateLimited,
        Self::StoreUnavailable,
    ];

    /// The string written in `code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::ParseError => "400",
            Self::InvalidToken => "401",
            Self::NotInitialized => "403",
            Self::UnknownCommand => "404",
            Self::AlreadyInitialized => "409",
            Self::UnsupportedFrame => "415",
            Self::RateLimited => "429",
            Self::StoreUnavailable => "503",
        }
    }

    /// The name written in `extra.error`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ParseError => "PARSE_ERROR",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::NotInitialized => "NOT_INITIALIZED",
            Self::UnknownCommand => "UNKNOWN_COMMAND",
            Self::AlreadyInitialized => "ALREADY_INITIALIZED",
            Self::UnsupportedFrame => "UNSUPPORTED_FRAME",
            Self::RateLimited => "RATE_LIMITED",
            Self::StoreUnavailable => "STORE_UNAVAILABLE",
        }
    }

    /// The close code that follows the error, for the errors that end the connection.
    pub fn close_code(self) -> Option<u16> {
        match self {
            Self::InvalidToken | Self::RateLimited => Some(1008),
            Self::StoreUnavailable => Some(1011),
            _ => None,
        }
    }
}
