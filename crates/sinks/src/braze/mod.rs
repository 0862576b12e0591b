//! The Braze export (`braze-export` jobs): audience membership to `POST /users/track`.

pub mod acks;
pub mod batch;
pub mod config;
pub mod counters;
pub mod limit;
pub mod request_builder;
pub mod service;
pub mod sink;
pub mod source;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tributary_core::{AccountId, AuthKind, DefinitionKind};
use tributary_jobs::{JobContext, Outcome, Workflow, WorkflowError};
use tributary_store::Store;

use config::ExportConfig;
use request_builder::MAX_USERS;
use source::{Position, Source};

pub struct BrazeExport;

/// Every workflow this crate provides, for a process's job runner.
pub fn workflows() -> tributary_jobs::Registry {
    tributary_jobs::Registry::default().with(Arc::new(BrazeExport))
}

#[async_trait]
impl Workflow for BrazeExport {
    fn name(&self) -> &'static str {
        "braze-export"
    }

    fn auth_kinds(&self) -> &'static [AuthKind] {
        &[AuthKind::Braze]
    }

    async fn validate(
        &self,
        store: &Arc<dyn Store>,
        aid: AccountId,
        config: &Value,
    ) -> Result<(), WorkflowError> {
        let config = ExportConfig::parse(config)?;
        for slug in &config.segment_ids {
            let found = store.definition(aid, DefinitionKind::Segment, slug).await?;
            if found.is_none() {
                return Err(WorkflowError::Invalid(format!(
                    "config.segment_ids: account {aid} has no audience {slug:?}"
                )));
            }
        }
        Ok(())
    }

    /// What the backfill would send: users, requests and Braze data points (one per user per
    /// audience), and the members skipped for lack of the identifier field.
    async fn dryrun(
        &self,
        store: &Arc<dyn Store>,
        aid: AccountId,
        config: &Value,
    ) -> Result<Value, WorkflowError> {
        let config = ExportConfig::parse(config)?;
        let head = store.membership_head(aid).await?;
        let mut source = Source::new(
            store.clone(),
            aid,
            0,
            &config,
            head,
            Position::Backfill { after: 0 },
        )
        .await?;
        let (mut users, mut points, mut skipped, mut gone) = (0u64, 0u64, 0u64, 0u64);
        while let Position::Backfill { .. } = source.position {
            let chunk = source.next_chunk().await?;
            let mut ids: Vec<&str> = chunk
                .changes
                .iter()
                .map(|c| c.identifier.as_str())
                .collect();
            ids.dedup();
            users += ids.len() as u64;
            points += chunk.changes.len() as u64;
            skipped += chunk.skipped_no_identifier;
            gone += chunk.skipped_gone;
        }
        Ok(json!({
            "users": users,
            "data_points": if config.withbackfill { points } else { 0 },
            "backfill_data_points": points,
            "requests": users.div_ceil(MAX_USERS as u64),
            "skipped_no_identifier": skipped,
            "skipped_gone": gone,
            "withbackfill": config.withbackfill,
        }))
    }

    async fn run(&self, ctx: JobContext) -> Outcome {
        sink::run(ctx).await
    }
}
