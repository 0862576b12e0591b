//! Authorizations, jobs and job logs. The SQL is the same on both backends (numbered `$n`
//! placeholders work in SQLite too), so the methods are written once, in `job_methods!`, and
//! expanded into each backend's `Store` impl with its write and read pools.

use tributary_core::{AuthKind, Authorization, Job, JobLogLine, JobState, LogLevel};

use crate::{Decodes, Result, StoreError};

pub(crate) const AUTH_COLUMNS: &str =
    "id, account_id, kind, label, description, config, sealed_secret, created_at, updated_at";
pub(crate) const JOB_COLUMNS: &str = "id, account_id, workflow, name, description, auth_ids, \
     config, state, progress, metrics, last_error, created_at, updated_at";

/// Rows per multi-row statement (well under SQLite's 32,766 bound parameters).
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// `$first, $first+1, ..` (`count` of them): a list for `IN (..)`.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2, $3), ($1, $4, $5), ..`: `rows` rows of `$1` and `columns` parameters each, for a
/// multi-row `VALUES` whose first column is the same for every row.
pub(crate) fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("($1, {})", placeholders(2 + r * columns, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `'running', 'sleeping'`: a state list for `IN (..)`, from the enum (never from input).
pub(crate) fn state_list(states: &[JobState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_column(text: &str, what: &str, id: i64) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} of row {id} is not JSON: {e}")))
}

pub(crate) fn auth_from_row<R>(row: &R) -> Result<Authorization>
where
    R: sqlx::Row,
    i64: Decodes<R>,
    String: Decodes<R>,
    Vec<u8>: Decodes<R>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let id: i64 = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let config: String = row.try_get("config")?;
    Ok(Authorization {
        id,
        account_id: row.try_get("account_id")?,
        kind: AuthKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("authorization {id} has kind {kind:?}")))?,
        label: row.try_get("label")?,
        description: row.try_get("description")?,
        config: json_column(&config, "config", id)?,
        sealed_secret: row.try_get("sealed_secret")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn job_from_row<R>(row: &R) -> Result<Job>
where
    R: sqlx::Row,
    i64: Decodes<R>,
    String: Decodes<R>,
    Option<String>: Decodes<R>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let id: i64 = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let auth_ids: String = row.try_get("auth_ids")?;
    let text = |column: &str| -> Result<serde_json::Value> {
        let value: String = row.try_get(column)?;
        json_column(&value, column, id)
    };
    Ok(Job {
        id,
        account_id: row.try_get("account_id")?,
        workflow: row.try_get("workflow")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        auth_ids: serde_json::from_str(&auth_ids)
            .map_err(|e| StoreError::Corrupt(format!("auth_ids of job {id}: {e}")))?,
        config: text("config")?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job {id} has state {state:?}")))?,
        progress: text("progress")?,
        metrics: text("metrics")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn log_line_from_row<R>(row: &R) -> Result<JobLogLine>
where
    R: sqlx::Row,
    i64: Decodes<R>,
    String: Decodes<R>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let level: String = row.try_get("level")?;
    Ok(JobLogLine {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        level: LogLevel::parse(&level),
        message: row.try_get("message")?,
    })
}

/// (Every dynamic SQL text here is built from constants and enum names, never from input.)
/// `JobStore` for a backend type with pools `$write` and `$read` (the same pool on
/// PostgreSQL). Reads go to `$read`: the runners poll jobs and states every half second, and
/// on SQLite that must not queue behind the pipeline's commits on the one writer connection
/// (a WAL reader sees every committed write).
macro_rules! job_store_impl {
    ($store:ty, $write:ident, $read:ident) => {
        #[async_trait::async_trait]
        impl crate::JobStore for $store {
        async fn create_authorization(
            &self,
            auth: &tributary_core::Authorization,
            seal: &(dyn Fn(i64) -> Vec<u8> + Send + Sync),
        ) -> Result<tributary_core::Authorization> {
            let mut tx = self.$write.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO authorizations
                 (account_id, kind, label, description, config, sealed_secret, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(auth.account_id)
            .bind(auth.kind.as_str())
            .bind(&auth.label)
            .bind(&auth.description)
            .bind(auth.config.to_string())
            .bind(Vec::<u8>::new())
            .bind(auth.created_at)
            .bind(auth.updated_at)
            .fetch_one(&mut *tx)
            .await?;
            let sealed_secret = seal(id);
            sqlx::query("UPDATE authorizations SET sealed_secret = $1 WHERE id = $2")
                .bind(&sealed_secret)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(tributary_core::Authorization {
                id,
                sealed_secret,
                ..auth.clone()
            })
        }

        async fn authorizations(
            &self,
            aid: AccountId,
        ) -> Result<Vec<tributary_core::Authorization>> {
            let sql = format!(
                "SELECT {} FROM authorizations WHERE account_id = $1 ORDER BY id",
                crate::jobs::AUTH_COLUMNS
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid).fetch_all(&self.$read).await?;
            rows.iter().map(crate::jobs::auth_from_row).collect()
        }

        async fn authorization(
            &self,
            aid: AccountId,
            id: i64,
        ) -> Result<Option<tributary_core::Authorization>> {
            let sql = format!(
                "SELECT {} FROM authorizations WHERE account_id = $1 AND id = $2",
                crate::jobs::AUTH_COLUMNS
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(aid)
                .bind(id)
                .fetch_optional(&self.$read)
                .await?;
            row.as_ref().map(crate::jobs::auth_from_row).transpose()
        }

        async fn update_authorization(&self, auth: &tributary_core::Authorization) -> Result<bool> {
            let done = sqlx::query(
                "UPDATE authorizations SET label = $1, description = $2, config = $3,
                 sealed_secret = $4, updated_at = $5 WHERE account_id = $6 AND id = $7",
            )
            .bind(&auth.label)
            .bind(&auth.description)
            .bind(auth.config.to_string())
            .bind(&auth.sealed_secret)
            .bind(auth.updated_at)
            .bind(auth.account_id)
            .bind(auth.id)
            .execute(&self.$write)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn delete_authorization(&self, aid: AccountId, id: i64, at: Micros) -> Result<bool> {
            use tributary_core::JobState;
            let mut tx = self.$write.begin().await?;
            let done = sqlx::query("DELETE FROM authorizations WHERE account_id = $1 AND id = $2")
                .bind(aid)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            let sql = format!(
                "SELECT {} FROM jobs WHERE account_id = $1 AND state IN ({})",
                crate::jobs::JOB_COLUMNS,
                crate::jobs::state_list(&[JobState::Running, JobState::Sleeping, JobState::Paused])
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid).fetch_all(&mut *tx).await?;
            let reason = format!("authorization {id} was deleted");
            for row in &rows {
                let job = crate::jobs::job_from_row(row)?;
                if !job.auth_ids.contains(&id) {
                    continue;
                }
                sqlx::query(
                    "UPDATE jobs SET state = $1, last_error = $2, updated_at = $3 WHERE id = $4",
                )
                .bind(JobState::Failed.as_str())
                .bind(&reason)
                .bind(at)
                .bind(job.id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        }

        async fn create_job(&self, job: &tributary_core::NewJob) -> Result<tributary_core::Job> {
            let auth_ids = serde_json::to_string(&job.auth_ids)
                .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
            let sql = format!(
                "INSERT INTO jobs (account_id, workflow, name, description, auth_ids, config,
                 state, progress, metrics, last_error, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, '{{}}', '{{}}', NULL, $8, $8)
                 RETURNING {}",
                crate::jobs::JOB_COLUMNS
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(job.account_id)
                .bind(&job.workflow)
                .bind(&job.name)
                .bind(&job.description)
                .bind(auth_ids)
                .bind(job.config.to_string())
                .bind(tributary_core::JobState::Running.as_str())
                .bind(job.created_at)
                .fetch_one(&self.$write)
                .await?;
            crate::jobs::job_from_row(&row)
        }

        async fn jobs(&self, aid: AccountId) -> Result<Vec<tributary_core::Job>> {
            let sql = format!(
                "SELECT {} FROM jobs WHERE account_id = $1 ORDER BY id",
                crate::jobs::JOB_COLUMNS
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid).fetch_all(&self.$read).await?;
            rows.iter().map(crate::jobs::job_from_row).collect()
        }

        async fn job(&self, aid: AccountId, id: i64) -> Result<Option<tributary_core::Job>> {
            let sql = format!(
                "SELECT {} FROM jobs WHERE account_id = $1 AND id = $2",
                crate::jobs::JOB_COLUMNS
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(aid)
                .bind(id)
                .fetch_optional(&self.$read)
                .await?;
            row.as_ref().map(crate::jobs::job_from_row).transpose()
        }

        async fn active_jobs(&self) -> Result<Vec<tributary_core::Job>> {
            let sql = format!(
                "SELECT {} FROM jobs WHERE state IN ({}) ORDER BY id",
                crate::jobs::JOB_COLUMNS,
                crate::jobs::state_list(&tributary_core::JobState::ACTIVE)
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.$read).await?;
            rows.iter().map(crate::jobs::job_from_row).collect()
        }

        async fn set_job_state(
            &self,
            aid: AccountId,
            id: i64,
            from: &[tributary_core::JobState],
            to: tributary_core::JobState,
            last_error: Option<&str>,
            at: Micros,
        ) -> Result<bool> {
            let sql = format!(
                "UPDATE jobs SET state = $1, last_error = COALESCE($2, last_error), updated_at = $3
                 WHERE account_id = $4 AND id = $5 AND state IN ({})",
                crate::jobs::state_list(from)
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(to.as_str())
                .bind(last_error)
                .bind(at)
                .bind(aid)
                .bind(id)
                .execute(&self.$write)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn report_job(&self, id: i64, report: &tributary_core::JobReport) -> Result<bool> {
            let sql = format!(
                "UPDATE jobs SET state = $1, progress = $2, metrics = $3, last_error = $4,
                 updated_at = $5 WHERE id = $6 AND state IN ({})",
                crate::jobs::state_list(&tributary_core::JobState::ACTIVE)
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(report.state.as_str())
                .bind(report.progress.to_string())
                .bind(report.metrics.to_string())
                .bind(report.last_error.as_deref())
                .bind(report.at)
                .bind(id)
                .execute(&self.$write)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn append_job_log(
            &self,
            job_id: i64,
            level: tributary_core::LogLevel,
            message: &str,
            at: Micros,
            keep: i64,
        ) -> Result<()> {
            let mut tx = self.$write.begin().await?;
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO job_logs (job_id, seq, at, level, message)
                 SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM job_logs WHERE job_id = $1
                 RETURNING seq",
            )
            .bind(job_id)
            .bind(at)
            .bind(level.as_str())
            .bind(message)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM job_logs WHERE job_id = $1 AND seq <= $2")
                .bind(job_id)
                .bind(seq - keep.max(1))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        async fn job_logs(
            &self,
            job_id: i64,
            limit: u32,
        ) -> Result<Vec<tributary_core::JobLogLine>> {
            let rows = sqlx::query(
                "SELECT seq, at, level, message FROM job_logs WHERE job_id = $1
                 ORDER BY seq DESC LIMIT $2",
            )
            .bind(job_id)
            .bind(i64::from(limit))
            .fetch_all(&self.$read)
            .await?;
            let mut lines = rows
                .iter()
                .map(crate::jobs::log_line_from_row)
                .collect::<Result<Vec<_>>>()?;
            lines.reverse();
            Ok(lines)
        }

        async fn save_stopped_run(
            &self,
            id: i64,
            progress: &serde_json::Value,
            metrics: &serde_json::Value,
            at: Micros,
        ) -> Result<()> {
            sqlx::query("UPDATE jobs SET progress = $1, metrics = $2, updated_at = $3 WHERE id = $4")
                .bind(progress.to_string())
                .bind(metrics.to_string())
                .bind(at)
                .bind(id)
                .execute(&self.$write)
                .await?;
            Ok(())
        }

        async fn remember_export_identifiers(
            &self,
            job_id: i64,
            sent: &[(i64, String)],
        ) -> Result<()> {
            if sent.is_empty() {
                return Ok(());
            }
            // One statement may not touch a row twice (PostgreSQL refuses it): the last
            // identifier sent for a profile is the one Braze holds.
            let mut latest = std::collections::HashMap::with_capacity(sent.len());
            for (profile, identifier) in sent {
                latest.insert(*profile, identifier.as_str());
            }
            let sent: Vec<(i64, &str)> = latest.into_iter().collect();
            let mut tx = self.$write.begin().await?;
            for part in sent.chunks(crate::jobs::ROWS_PER_INSERT) {
                let sql = format!(
                    "INSERT INTO export_identifiers (job_id, profile_id, identifier) VALUES {}
                     ON CONFLICT (job_id, profile_id) DO UPDATE SET identifier = excluded.identifier
                     WHERE export_identifiers.identifier <> excluded.identifier",
                    crate::jobs::value_rows(part.len(), 2)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(job_id);
                for (profile, identifier) in part {
                    q = q.bind(*profile).bind(*identifier);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn export_identifiers(
            &self,
            job_id: i64,
            profile_ids: &[i64],
        ) -> Result<Vec<(i64, String)>> {
            let mut out = Vec::new();
            for part in profile_ids.chunks(crate::jobs::ROWS_PER_INSERT) {
                let sql = format!(
                    "SELECT profile_id, identifier FROM export_identifiers
                     WHERE job_id = $1 AND profile_id IN ({})",
                    crate::jobs::placeholders(2, part.len())
                );
                let mut q = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql)).bind(job_id);
                for id in part {
                    q = q.bind(*id);
                }
                out.extend(q.fetch_all(&self.$read).await?);
            }
            Ok(out)
        }

        async fn forget_export_identifiers(&self, job_id: i64, profile_ids: &[i64]) -> Result<()> {
            for part in profile_ids.chunks(crate::jobs::ROWS_PER_INSERT) {
                let sql = format!(
                    "DELETE FROM export_identifiers WHERE job_id = $1 AND profile_id IN ({})",
                    crate::jobs::placeholders(2, part.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(job_id);
                for id in part {
                    q = q.bind(*id);
                }
                q.execute(&self.$write).await?;
            }
            Ok(())
        }

        async fn erased_profiles(&self, aid: AccountId, profile_ids: &[i64]) -> Result<Vec<i64>> {
            let mut out = Vec::new();
            for part in profile_ids.chunks(crate::jobs::ROWS_PER_INSERT) {
                let sql = format!(
                    "SELECT profile_id FROM erasures WHERE account_id = $1 AND profile_id IN ({})",
                    crate::jobs::placeholders(2, part.len())
                );
                let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(aid);
                for id in part {
                    q = q.bind(*id);
                }
                out.extend(q.fetch_all(&self.$read).await?);
            }
            Ok(out)
        }

        }
    };
}
