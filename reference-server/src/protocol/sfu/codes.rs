//! Every error the SFU writes, as a protoo error response
//! `{"response":true,"id":...,"ok":false,"errorCode":...,"errorReason":...}`. The table, with
//! triggers, is S7 in `fixtures/sfu/CLARIFICATIONS.md`. The document shows `errorCode` as a
//! string (`"err_codexxx"`), so the codes are strings.

/// A refusal. The connection stays open unless [`ErrorCode::close_code`] says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object. Answered with `id: null`.
    BadJson,
    /// Not a protoo request: no `request: true`, no integer `id`, no string `method`, or a
    /// `data` that is not an object.
    BadRequest,
    /// A `method` the server does not know.
    UnknownMethod,
    /// A known method with a missing or ill-typed field (`rid`, `mid`, `sid`, `jsep`, ...).
    InvalidParams,
    /// Anything but `join` before `join`, or a `rid` other than the room joined.
    NotJoined,
    /// A second `join` on one connection.
    AlreadyJoined,
    /// A `mid` that is not published in the room.
    StreamNotFound,
    /// A `sid` that is not the caller's subscription, or another peer's `mid` in `unpublish`.
    SubscriptionNotFound,
    /// An `unpublish` of a stream another peer published.
    NotOwner,
    /// The `jsep` is not an offer, or its SDP cannot be answered with Opus or VP8.
    BadSdp,
    /// A room, publication or subscription limit is reached.
    LimitReached,
    /// A frame over the size limit.
    TooLarge,
    /// A binary frame: protoo is JSON text.
    UnsupportedFrame,
    /// More frames than the rate limit allows. Closes (1008).
    RateLimited,
    /// The media plane failed or is gone.
    MediaError,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        Self::BadJson,
        Self::BadRequest,
        Self::UnknownMethod,
        Self::InvalidParams,
        Self::NotJoined,
        Self::AlreadyJoined,
        Self::StreamNotFound,
        Self::SubscriptionNotFound,
        Self::NotOwner,
        Self::BadSdp,
        Self::LimitReached,
        Self::TooLarge,
        Self::UnsupportedFrame,
        Self::RateLimited,
        Self::MediaError,
    ];

    /// The string written in `errorCode`.
    pub fn code(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadRequest => "bad_request",
            Self::UnknownMethod => "unknown_method",
            Self::InvalidParams => "invalid_params",
            Self::NotJoined => "not_joined",
            Self::AlreadyJoined => "already_joined",
            Self::StreamNotFound => "stream_not_found",
            Self::SubscriptionNotFound => "subscription_not_found",
            Self::NotOwner => "not_owner",
            Self::BadSdp => "bad_sdp",
            Self::LimitReached => "limit_reached",
            Self::TooLarge => "too_large",
            Self::UnsupportedFrame => "unsupported_frame",
            Self::RateLimited => "rate_limited",
            Self::MediaError => "media_error",
        }
    }

    /// The close code that follows the error, for the errors that end the connection.
    pub fn close_code(self) -> Option<u16> {
        match self {
            Self::RateLimited => Some(1008),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_is_spelled_once() {
        let codes: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }
}
