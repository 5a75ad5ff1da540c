//! What is wrong with a request's words ([`super::proto::Command::parse`]): typed, so a door
//! can tell one mistake from another; the Display is the usage message both ends show (the
//! server after `2 usage`, the client on stderr before it connects).

/// A request that is not a command as written. `usage` is the command's usage line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UsageError {
    #[error("empty command; 'help' lists the commands")]
    Empty,
    /// `hint`: the command a typo likely meant.
    #[error("unknown command '{word}'{}; 'help' lists the commands", did_you_mean(*.hint))]
    UnknownCommand {
        word: String,
        hint: Option<&'static str>,
    },
    /// `what`: SERVICE or UNIT.
    #[error("missing {what}; usage: {usage}")]
    Missing {
        what: &'static str,
        usage: &'static str,
    },
    #[error("unexpected '{word}'; usage: {usage}")]
    Unexpected { word: String, usage: &'static str },
    /// `hint`: the option a near miss likely meant; `reason_after_dashes`: the command takes a
    /// REASON, which may start with '-' after `--`.
    #[error(
        "unknown option '{word}'{}{}; usage: {usage}",
        did_you_mean(*.hint),
        if *.reason_after_dashes { "; a REASON that starts with '-' goes after '--'" } else { "" }
    )]
    UnknownOption {
        word: String,
        hint: Option<&'static str>,
        reason_after_dashes: bool,
        usage: &'static str,
    },
    /// `--wait=X` other than `--wait=drained` where that is allowed.
    #[error(
        "'{word}'{}: --wait takes no value, or =drained on disable, pause and unit_stopping; \
         usage: {usage}",
        did_you_mean(*.hint)
    )]
    WaitValue {
        word: String,
        hint: Option<&'static str>,
        usage: &'static str,
    },
    /// `--for` or `--timeout` last, without its value.
    #[error("{option} needs a DURATION, e.g. {option} {example}")]
    NoDuration {
        option: &'static str,
        example: &'static str,
    },
    #[error("--timeout goes with --wait; usage: {usage}")]
    TimeoutWithoutWait { usage: &'static str },
    #[error(transparent)]
    Duration(#[from] DurationError),
}

/// A DURATION (`--for`, `--timeout`) that is none.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    #[error("bad duration '{text}' ({why}); use e.g. 90s, 30m, 2h")]
    Unreadable {
        text: String,
        why: humantime::DurationError,
    },
    #[error("bad duration '{text}': must be longer than 0")]
    Zero { text: String },
}

/// ` (did you mean 'x'?)`, or nothing.
pub(super) fn did_you_mean(hint: Option<&str>) -> String {
    hint.map(|h| format!(" (did you mean '{h}'?)"))
        .unwrap_or_default()
}
