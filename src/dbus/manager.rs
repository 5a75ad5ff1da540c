//! The manager object: `org.psentinel.PSentinel1.Manager` at `/org/psentinel/PSentinel1`,
//! beside `org.freedesktop.DBus.ObjectManager` (added by `super`).

use super::error::{Error, Result};
use super::{service_path, Ctx};
use crate::auth::Request;
use crate::engine::EngineError;
use crate::model::Refusal;
use std::collections::HashMap;
use std::sync::Arc;
use zbus::message::Header;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{interface, Connection};

pub struct Manager {
    pub(super) ctx: Arc<Ctx>,
}

impl Manager {
    /// PauseAll and PauseAllWithOptions: one body, PauseAll has no options. Who asks is
    /// checked before the options, as for a service's DisableWithOptions.
    async fn pause_all_with(
        &self,
        options: &HashMap<String, OwnedValue>,
        hdr: &Header<'_>,
        conn: &Connection,
    ) -> Result<()> {
        let actor = self
            .ctx
            .authorise(conn, hdr, "PauseAll", Request::daemon("pause"))
            .await?;
        let force = super::service::force_option(options)?;
        self.ctx
            .handle
            .pause_with(None, "", None, force, &actor)
            .await?;
        Ok(())
    }
}

#[interface(name = "org.psentinel.PSentinel1.Manager")]
impl Manager {
    /// The object paths of every configured service, in name order.
    #[zbus(out_args("services"))]
    async fn list_services(&self) -> Vec<OwnedObjectPath> {
        self.ctx
            .handle
            .snapshot()
            .services
            .keys()
            .map(|n| service_path(n))
            .collect()
    }

    /// The object path of the service named `name` (as in the configuration).
    #[zbus(out_args("service"))]
    async fn get_service(&self, name: &str) -> Result<OwnedObjectPath> {
        if self.ctx.handle.snapshot().services.contains_key(name) {
            Ok(service_path(name))
        } else {
            Err(Error::from(EngineError::from(Refusal::UnknownService(
                name.into(),
            ))))
        }
    }

    /// Pauses every pausable service (`psentinel -c pause`).
    async fn pause_all(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.pause_all_with(&HashMap::new(), &hdr, conn).await
    }

    /// PauseAll with options: `force` (b) pauses even when the capacity guard refuses.
    async fn pause_all_with_options(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.pause_all_with(&options, &hdr, conn).await
    }

    /// Resumes every pausable service (`psentinel -c run`).
    async fn run_all(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        let actor = self
            .ctx
            .authorise(conn, &hdr, "RunAll", Request::daemon("run"))
            .await?;
        self.ctx.handle.resume(None, &actor).await?;
        Ok(())
    }

    /// Re-reads the configuration file, like SIGHUP; a bad file is refused (ReloadRefused)
    /// and the running configuration stays.
    async fn reload(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        let actor = self
            .ctx
            .authorise(conn, &hdr, "Reload", Request::daemon("reload"))
            .await?;
        self.ctx.handle.reload(&actor).await?;
        Ok(())
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        crate::status::VERSION.to_string()
    }
}
