//! The `sftp-import` workflow: list the folder, import each new file, and with
//! `continuous_update` look again every `file_frequency` until stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tributary_core::{AccountId, AuthKind, JobState, LogLevel};
use tributary_jobs::{JobContext, Outcome, Workflow, WorkflowError};
use tributary_store::Store;

use crate::config::ImportConfig;
use crate::file::{Counters, FileImport, RemoteFile};
use crate::folder::Folder;
use crate::pgp::PgpKey;
use crate::sftp::{Connection, Target, connect};

/// How often a running import writes its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The workflow; `managed_root` is where this node keeps the managed SFTP folders (`None`
/// when it runs no managed server: jobs on `sftp-managed` authorizations then fail here).
pub struct SftpImport {
    pub managed_root: Option<std::path::PathBuf>,
}

#[async_trait]
impl Workflow for SftpImport {
    fn name(&self) -> &'static str {
        "sftp-import"
    }

    fn auth_kinds(&self) -> &'static [AuthKind] {
        &[AuthKind::Sftp, AuthKind::SftpPgp, AuthKind::SftpManaged]
    }

    async fn validate(
        &self,
        _store: &Arc<dyn Store>,
        _aid: AccountId,
        config: &Value,
    ) -> Result<(), WorkflowError> {
        ImportConfig::parse(config).map_err(WorkflowError::Invalid)?;
        Ok(())
    }

    async fn dryrun(
        &self,
        _store: &Arc<dyn Store>,
        _aid: AccountId,
        config: &Value,
    ) -> Result<Value, WorkflowError> {
        let c = ImportConfig::parse(config).map_err(WorkflowError::Invalid)?;
        Ok(json!({
            "stream": c.stream,
            "folder": c.folder,
            "continuous_update": c.continuous_update,
            "file_frequency_seconds": c.file_frequency.as_secs(),
            "files": "listed when the job runs",
        }))
    }

    async fn run(&self, ctx: JobContext) -> Outcome {
        let config = match ImportConfig::parse(&ctx.job.config) {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(e),
        };
        let ctx = Arc::new(ctx);
        let mut totals = Totals::default();
        loop {
            let result =
                import_once(&ctx, &config, self.managed_root.as_deref(), &mut totals).await;
            if ctx.stop_requested() {
                let _ = ctx
                    .report_stopped(totals.progress(None), totals.metrics())
                    .await;
                return Outcome::Stopped;
            }
            let last_error = match result {
                Ok(()) => None,
                Err(reason) if !config.continuous_update => return Outcome::Failed(reason),
                Err(reason) => {
                    ctx.log(
                        LogLevel::Warn,
                        &format!("{reason}; trying again at the next look"),
                    )
                    .await;
                    Some(reason)
                }
            };
            if !config.continuous_update {
                let _ = ctx
                    .report(
                        JobState::Running,
                        totals.progress(None),
                        totals.metrics(),
                        None,
                    )
                    .await;
                return Outcome::Completed;
            }
            match ctx
                .report(
                    JobState::Sleeping,
                    totals.progress(None),
                    totals.metrics(),
                    last_error,
                )
                .await
            {
                Ok(true) => {}
                _ => return Outcome::Stopped,
            }
            tokio::select! {
                _ = ctx.stopped() => {}
                _ = tokio::time::sleep(config.file_frequency) => {}
            }
        }
    }
}

/// What the job has done over all its looks, and the host key it trusts.
#[derive(Default)]
struct Totals {
    files: u64,
    stored: u64,
    rejected: u64,
    /// Rows `diff` skipped.
    unchanged: u64,
    host_key: Option<String>,
}

impl Totals {
    fn progress(&self, current: Option<(&RemoteFile, &Counters, Instant)>) -> Value {
        let mut p = json!({ "files_imported": self.files, "host_key": self.host_key });
        if let Some((file, counters, started)) = current {
            let rows = counters.rows.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64().max(0.001);
            p["file"] = json!(file.name);
            p["bytes_read"] = json!(counters.bytes_read.load(Ordering::Relaxed));
            p["bytes_total"] = json!(file.size);
            p["rows"] = json!(rows);
            p["rows_per_second"] = json!((rows as f64 / secs).round());
        }
        p
    }

    fn metrics(&self) -> Value {
        json!({ "files_imported": self.files, "rows_stored": self.stored, "rows_rejected": self.rejected,
                "rows_unchanged": self.unchanged })
    }
}

/// One look at the folder: connect, list, import each file not yet imported.
async fn import_once(
    ctx: &Arc<JobContext>,
    config: &ImportConfig,
    managed_root: Option<&std::path::Path>,
    totals: &mut Totals,
) -> Result<(), String> {
    let credentials = ctx
        .credentials
        .first()
        .ok_or("the job has no authorization")?;
    let pgp = match credentials.kind {
        AuthKind::SftpPgp => Some(Arc::new(PgpKey::from_credentials(credentials)?)),
        _ => None,
    };
    let folder = match credentials.kind {
        AuthKind::SftpManaged => managed_folder(credentials, config, managed_root)?,
        _ => remote_folder(ctx, credentials, config, totals).await?,
    };
    let folder = Arc::new(folder);
    let files = folder.list(config).await?;
    let known: HashMap<(String, i64, i64), tributary_core::ImportFile> = ctx
        .store
        .import_files(ctx.job.id)
        .await
        .map_err(|e| format!("reading the job's files failed: {e}"))?
        .into_iter()
        .map(|f| ((f.name.clone(), f.size, f.modified), f))
        .collect();
    // With `diff`, each file is compared with the job's last finished one.
    let mut previous = known
        .values()
        .filter(|f| f.done)
        .max_by_key(|f| (f.updated_at, f.name.clone()))
        .map(|f| crate::diff::generation(&f.name, f.size, f.modified));
    for file in files {
        let key = (file.name.clone(), file.size as i64, file.modified);
        let already = match known.get(&key) {
            Some(f) if f.done => continue,
            Some(f) => f.rows_done,
            None => 0,
        };
        if ctx.stop_requested() {
            return Ok(());
        }
        ctx.log(
            LogLevel::Info,
            &format!("importing {} ({} bytes)", file.name, file.size),
        )
        .await;
        let counters = Arc::new(Counters::default());
        let stop_ctx = ctx.clone();
        let import = FileImport {
            folder: folder.clone(),
            store: ctx.store.clone(),
            config: config.clone(),
            account_id: ctx.job.account_id,
            job_id: ctx.job.id,
            file: file.clone(),
            already,
            counters: counters.clone(),
            pgp: pgp.clone(),
            keep_going: Arc::new(move || !stop_ctx.stop_requested()),
            diff: config.diff.then(|| crate::diff::Diff {
                baseline: previous,
                generation: crate::diff::generation(&key.0, key.1, key.2),
            }),
        };
        let runtime = tokio::runtime::Handle::current();
        let started = Instant::now();
        let mut work = tokio::task::spawn_blocking(move || import.run(runtime));
        let outcome = loop {
            tokio::select! {
                done = &mut work => break done.map_err(|e| format!("the import of {} crashed: {e}", file.name))?,
                _ = tokio::time::sleep(PROGRESS_EVERY) => {
                    let progress = totals.progress(Some((&file, &counters, started)));
                    let _ = ctx.report(JobState::Running, progress, totals.metrics(), None).await;
                }
            }
        }?;
        if !outcome.finished {
            return Ok(());
        }
        previous = Some(crate::diff::generation(&key.0, key.1, key.2));
        totals.files += 1;
        totals.stored += outcome.stored;
        totals.unchanged += outcome.unchanged;
        totals.rejected += outcome.rejected;
        let mut line = format!(
            "{}: {} rows stored, {} rejected",
            file.name, outcome.stored, outcome.rejected
        );
        if config.diff {
            line.push_str(&format!(
                ", {} unchanged since the previous file",
                outcome.unchanged
            ));
        }
        for r in &outcome.rejections {
            line.push_str("; ");
            line.push_str(r);
        }
        ctx.log(LogLevel::Info, &line).await;
    }
    Ok(())
}

/// Connects to the authorization's server (checking its host key) and opens the folder.
async fn remote_folder(
    ctx: &JobContext,
    credentials: &tributary_jobs::Credentials,
    config: &ImportConfig,
    totals: &mut Totals,
) -> Result<Folder, String> {
    let target = Target::from_credentials(credentials)?;
    // The authorization's pinned key, else the one this job saw first.
    let pinned = credentials
        .config
        .get("host_key")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| totals.host_key.clone())
        .or_else(|| ctx.job.progress["host_key"].as_str().map(str::to_string));
    let Connection { sftp, host_key, .. } = connect(&target, pinned.as_deref()).await?;
    if totals.host_key.is_none() {
        ctx.log(
            LogLevel::Info,
            &format!("trusting the server's host key {host_key}"),
        )
        .await;
        totals.host_key = Some(host_key);
    }
    let folder = if config.folder.is_empty() {
        ".".to_string()
    } else {
        config.folder.clone()
    };
    Ok(Folder::Sftp {
        session: sftp,
        folder,
    })
}

/// The managed login's folder on this node's storage, and `folder` inside it.
fn managed_folder(
    credentials: &tributary_jobs::Credentials,
    config: &ImportConfig,
    managed_root: Option<&std::path::Path>,
) -> Result<Folder, String> {
    let root = managed_root.ok_or(
        "this node runs no managed SFTP server (start serve with --sftp-listen and the same \
         --sftp-root as the node that receives the uploads)",
    )?;
    let username = credentials
        .config
        .get("username")
        .and_then(Value::as_str)
        .ok_or("the authorization has no username")?;
    let home = crate::managed::folder_of(root, username)?;
    let inside = crate::managed::Jail::virtual_path(&config.folder)
        .map_err(|e| format!("folder {:?}: {e}", config.folder))?;
    Ok(Folder::Local(home.join(inside.trim_start_matches('/'))))
}
