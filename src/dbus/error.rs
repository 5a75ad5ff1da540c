//! The D-Bus errors psentinel answers with: typed names a script can match on, and messages
//! a person understands (the same words as the control socket).

use crate::engine::EngineError;
use crate::model::Refusal;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.psentinel.PSentinel1.Error")]
pub enum Error {
    /// Failures of the bus itself (passed through with their own names).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No service of that name in the running configuration.
    UnknownService(String),
    /// Pause/Resume of a service without `pausable=yes`, or PauseAll/RunAll with none.
    NotPausable(String),
    /// The caller may read but not change state.
    AccessDenied(String),
    /// Reload found a bad configuration; the running one stays.
    ReloadRefused(String),
    /// The daemon is stopping and no longer takes requests.
    ShuttingDown(String),
    /// Disable or Pause would leave a load balancer's backend below `min_capacity` (or with
    /// no usable server); the `force` option takes the service out anyway.
    CapacityGuard(String),
    /// The change is in effect but the state file could not be written (full or read-only
    /// `state_dir`): a restart before psentinel's retry succeeds would forget it.
    NotSaved(String),
    /// No service follows the unit named.
    UnknownUnit(String),
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        let msg = e.to_string();
        match e {
            EngineError::Refused(Refusal::UnknownService(_)) => Error::UnknownService(msg),
            EngineError::Refused(Refusal::NotPausable(_)) | EngineError::NothingPausable => {
                Error::NotPausable(msg)
            }
            EngineError::Reload(_) => Error::ReloadRefused(msg),
            EngineError::CapacityGuard(_) => Error::CapacityGuard(msg),
            EngineError::Stopped => Error::ShuttingDown(msg),
            EngineError::NotSaved { .. } => Error::NotSaved(msg),
            EngineError::Refused(Refusal::UnknownUnit(_)) => Error::UnknownUnit(msg),
        }
    }
}

/// Lets methods use `?` on the standard errors (e.g. a service removed by a reload).
impl From<zbus::fdo::Error> for Error {
    fn from(e: zbus::fdo::Error) -> Self {
        Error::ZBus(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn engine_errors_map_to_typed_names() {
        let e: Error = EngineError::Refused(Refusal::UnknownService("web".into())).into();
        assert_eq!(
            e.name().as_str(),
            "org.psentinel.PSentinel1.Error.UnknownService"
        );
        assert_eq!(e.description(), Some("unknown service 'web'"));
        let e: Error = EngineError::NothingPausable.into();
        assert_eq!(
            e.name().as_str(),
            "org.psentinel.PSentinel1.Error.NotPausable"
        );
        let e: Error = EngineError::Stopped.into();
        assert_eq!(
            e.name().as_str(),
            "org.psentinel.PSentinel1.Error.ShuttingDown"
        );
    }
}
