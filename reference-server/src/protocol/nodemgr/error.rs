//! Error codes of seed 001 §错误码说明 and the decode errors that map onto them.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Every code in the document's table. The wire form is the SCREAMING_SNAKE name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidToken,
    NodeNotFound,
    CommandTimeout,
    ParseError,
    UnknownMessageType,
    DatabaseError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 6] = [
        Self::InvalidToken,
        Self::NodeNotFound,
        Self::CommandTimeout,
        Self::ParseError,
        Self::UnknownMessageType,
        Self::DatabaseError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidToken => "INVALID_TOKEN",
            Self::NodeNotFound => "NODE_NOT_FOUND",
            Self::CommandTimeout => "COMMAND_TIMEOUT",
            Self::ParseError => "PARSE_ERROR",
            Self::UnknownMessageType => "UNKNOWN_MESSAGE_TYPE",
            Self::DatabaseError => "DATABASE_ERROR",
        }
    }

    /// The document's own description of the code (说明 column).
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidToken => "认证令牌无效",
            Self::NodeNotFound => "节点不存在",
            Self::CommandTimeout => "命令执行超时",
            Self::ParseError => "消息解析失败",
            Self::UnknownMessageType => "未知消息类型",
            Self::DatabaseError => "数据库操作失败",
        }
    }
}

/// Why a text frame from a node could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("JSON解析错误: {0}")]
    Json(String),
    #[error("the message is not a JSON object")]
    NotAnObject,
    #[error("missing envelope field `{0}`")]
    MissingField(&'static str),
    #[error("envelope field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("timestamp `{0}` is not RFC 3339")]
    BadTimestamp(String),
    #[error("未知的消息类型: {0}")]
    UnknownType(String),
    #[error("invalid `data` for {kind}: {detail}")]
    BadData { kind: &'static str, detail: String },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownType(_) => ErrorCode::UnknownMessageType,
            _ => ErrorCode::ParseError,
        }
    }
}
