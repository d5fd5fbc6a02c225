//! A conformance case is a value: a stable id, a level, a source in the documents, and a body.

use crate::target::Ctx;
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::fmt;

/// How strongly the documents ask for the behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Must,
    Should,
}

/// Where the requirement comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reference", rename_all = "lowercase")]
pub enum Source {
    /// A section of the seed document, e.g. `001 §2 心跳与监控数据`.
    Documented(&'static str),
    /// The project's own reading, naming the decision in CLARIFICATIONS.md.
    Inferred(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Documented(s) => write!(f, "documented: {s}"),
            Self::Inferred(s) => write!(f, "inferred: {s}"),
        }
    }
}

/// What a case body returns when the implementation did what was required.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    /// An accepted variant of the requirement: reported as non-strict.
    Variant(String),
    /// Nothing to grade, only to report.
    Informational(String),
}

/// Why a case body stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("expected {expected}, got {actual}")]
    Mismatch { expected: String, actual: String },
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    #[error("harness error: {0}")]
    Harness(String),
}

impl Failure {
    pub fn mismatch(expected: impl Into<String>, actual: impl fmt::Display) -> Self {
        Self::Mismatch {
            expected: expected.into(),
            actual: actual.to_string(),
        }
    }
}

pub type CaseResult = Result<Outcome, Failure>;
pub type CaseFn = fn(Ctx) -> BoxFuture<'static, CaseResult>;

/// One conformance case.
#[derive(Clone)]
pub struct Case {
    pub id: &'static str,
    pub level: Level,
    pub source: Source,
    pub sends: &'static str,
    pub requires: &'static str,
    pub body: CaseFn,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Builder that reads like the spec line it checks.
#[derive(Debug)]
pub struct CaseBuilder {
    id: &'static str,
    level: Level,
    source: Option<Source>,
    sends: &'static str,
    requires: &'static str,
}

impl Case {
    pub fn must(id: &'static str) -> CaseBuilder {
        CaseBuilder::new(id, Level::Must)
    }

    pub fn should(id: &'static str) -> CaseBuilder {
        CaseBuilder::new(id, Level::Should)
    }

    pub fn protocol(&self) -> &'static str {
        self.id.split('/').next().unwrap_or(self.id)
    }
}

impl CaseBuilder {
    fn new(id: &'static str, level: Level) -> Self {
        Self {
            id,
            level,
            source: None,
            sends: "",
            requires: "",
        }
    }

    pub fn documented(mut self, section: &'static str) -> Self {
        self.source = Some(Source::Documented(section));
        self
    }

    pub fn inferred(mut self, decision: &'static str) -> Self {
        self.source = Some(Source::Inferred(decision));
        self
    }

    pub fn sends(mut self, what: &'static str) -> Self {
        self.sends = what;
        self
    }

    pub fn requires(mut self, what: &'static str) -> Self {
        self.requires = what;
        self
    }

    pub fn run(self, body: CaseFn) -> Case {
        Case {
            id: self.id,
            level: self.level,
            source: self.source.unwrap_or(Source::Inferred("no source given")),
            sends: self.sends,
            requires: self.requires,
            body,
        }
    }
}

/// The graded result of one case, as reports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail {
        requirement: String,
        expected: String,
        actual: String,
    },
    NonStrict {
        reason: String,
    },
    Unimplemented {
        reason: String,
    },
    Informational {
        note: String,
    },
    HarnessError {
        reason: String,
    },
    /// Failed, and listed in the expectations file with this reason.
    ExpectedFailure {
        reason: String,
    },
    /// Listed in the expectations file as failing, but passed: the file is out of date.
    Stale {
        reason: String,
    },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail { .. } => "FAIL",
            Self::NonStrict { .. } => "NON-STRICT",
            Self::Unimplemented { .. } => "UNIMPLEMENTED",
            Self::Informational { .. } => "INFO",
            Self::HarnessError { .. } => "HARNESS-ERROR",
            Self::ExpectedFailure { .. } => "XFAIL",
            Self::Stale { .. } => "STALE",
        }
    }

    /// Whether the run must exit non-zero because of this verdict.
    pub fn breaks_the_run(&self) -> bool {
        matches!(
            self,
            Self::Fail { .. } | Self::HarnessError { .. } | Self::Stale { .. }
        )
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Fail { .. })
    }
}
