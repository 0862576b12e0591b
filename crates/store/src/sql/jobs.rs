//! [`JobStore`]: authorizations, jobs, job logs and what exports sent, in the state database.
//! Reads go to the readers: the runners poll jobs and states every half second, and on SQLite
//! that must not queue behind the pipeline's commits (a WAL reader sees every commit).
//! (Every dynamic SQL text here is built from constants and enum names, never from input.)

use async_trait::async_trait;
use tributary_core::{
    AccountId, Authorization, Job, JobLogLine, JobReport, JobState, LogLevel, Micros, NewJob,
};

use sqlx::Row;

use super::{
    SqlStore, account_record, account_records, decode_all, per_id_chunk, statement_chunks,
};
use crate::rows::{AUTH_COLUMNS, JOB_COLUMNS, auth_from_row, job_from_row, log_line_from_row};
use crate::{JobStore, Result, StoreError};

/// How far back a job's per-minute metrics go: a day.
pub const JOB_MINUTES_KEPT_SECS: i64 = 24 * 3600;

/// `'running', 'sleeping'`: a state list for `IN (..)`, from the enum (never from input).
fn state_list(states: &[JobState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl JobStore for SqlStore {
    async fn create_authorization(
        &self,
        auth: &Authorization,
        seal: &(dyn Fn(i64) -> Vec<u8> + Send + Sync),
    ) -> Result<Authorization> {
        let mut tx = self.state.write.begin().await?;
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
        Ok(Authorization {
            id,
            sealed_secret,
            ..auth.clone()
        })
    }

    async fn authorizations(&self, aid: AccountId) -> Result<Vec<Authorization>> {
        let pool = &self.state.read;
        account_records(pool, "authorizations", AUTH_COLUMNS, aid, auth_from_row).await
    }

    async fn authorization(&self, aid: AccountId, id: i64) -> Result<Option<Authorization>> {
        let pool = &self.state.read;
        account_record(
            pool,
            "authorizations",
            AUTH_COLUMNS,
            (aid, id),
            auth_from_row,
        )
        .await
    }

    async fn update_authorization(&self, auth: &Authorization) -> Result<bool> {
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
        .execute(&self.state.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_authorization(&self, aid: AccountId, id: i64, at: Micros) -> Result<bool> {
        let mut tx = self.state.write.begin().await?;
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
            JOB_COLUMNS,
            state_list(&[JobState::Running, JobState::Sleeping, JobState::Paused])
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(aid)
            .fetch_all(&mut *tx)
            .await?;
        let reason = format!("authorization {id} was deleted");
        for row in &rows {
            let job = job_from_row(row)?;
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

    async fn create_job(&self, job: &NewJob) -> Result<Job> {
        let auth_ids =
            serde_json::to_string(&job.auth_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sql = format!(
            "INSERT INTO jobs (account_id, workflow, name, description, auth_ids, config,
             state, progress, metrics, last_error, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, '{{}}', '{{}}', NULL, $8, $8)
             RETURNING {}",
            JOB_COLUMNS
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job.account_id)
            .bind(&job.workflow)
            .bind(&job.name)
            .bind(&job.description)
            .bind(auth_ids)
            .bind(job.config.to_string())
            .bind(JobState::Running.as_str())
            .bind(job.created_at)
            .fetch_one(&self.state.write)
            .await?;
        job_from_row(&row)
    }

    async fn jobs(&self, aid: AccountId) -> Result<Vec<Job>> {
        account_records(&self.state.read, "jobs", JOB_COLUMNS, aid, job_from_row).await
    }

    async fn job(&self, aid: AccountId, id: i64) -> Result<Option<Job>> {
        account_record(
            &self.state.read,
            "jobs",
            JOB_COLUMNS,
            (aid, id),
            job_from_row,
        )
        .await
    }

    async fn active_jobs(&self) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {} FROM jobs WHERE state IN ({}) ORDER BY id",
            JOB_COLUMNS,
            state_list(&JobState::ACTIVE)
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql));
        decode_all(query, &self.state.read, job_from_row).await
    }

    async fn set_job_state(
        &self,
        aid: AccountId,
        id: i64,
        from: &[JobState],
        to: JobState,
        last_error: Option<&str>,
        at: Micros,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE jobs SET state = $1, last_error = COALESCE($2, last_error), updated_at = $3
             WHERE account_id = $4 AND id = $5 AND state IN ({})",
            state_list(from)
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(last_error)
            .bind(at)
            .bind(aid)
            .bind(id)
            .execute(&self.state.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn report_job(&self, id: i64, report: &JobReport) -> Result<bool> {
        let sql = format!(
            "UPDATE jobs SET state = $1, progress = $2, metrics = $3, last_error = $4,
             updated_at = $5 WHERE id = $6 AND state IN ({})",
            state_list(&JobState::ACTIVE)
        );
        let metrics = report.metrics.to_string();
        let mut tx = self.state.write.begin().await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(report.state.as_str())
            .bind(report.progress.to_string())
            .bind(metrics.as_str())
            .bind(report.last_error.as_deref())
            .bind(report.at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let minute = report.at - report.at.rem_euclid(super::events::MINUTE);
        sqlx::query(
            "INSERT INTO job_minutes (job_id, minute, metrics) VALUES ($1, $2, $3)
             ON CONFLICT (job_id, minute) DO UPDATE SET metrics = excluded.metrics",
        )
        .bind(id)
        .bind(minute)
        .bind(metrics.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM job_minutes WHERE job_id = $1 AND minute < $2")
            .bind(id)
            .bind(minute - JOB_MINUTES_KEPT_SECS * 1_000_000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn job_minutes(
        &self,
        job_id: i64,
        since: Micros,
    ) -> Result<Vec<(Micros, serde_json::Value)>> {
        // From the last minute before the window, if any: the metrics as they stood when
        // it began, which the window's first increase is measured from.
        let rows: Vec<(Micros, String)> = sqlx::query_as(
            "SELECT minute, metrics FROM job_minutes WHERE job_id = $1 AND minute >= COALESCE(
               (SELECT MAX(minute) FROM job_minutes WHERE job_id = $1 AND minute < $2), $2)
             ORDER BY minute",
        )
        .bind(job_id)
        .bind(since - since.rem_euclid(super::events::MINUTE))
        .fetch_all(&self.state.read)
        .await?;
        rows.into_iter()
            .map(|(minute, text)| {
                serde_json::from_str(&text)
                    .map(|metrics| (minute, metrics))
                    .map_err(|e| StoreError::Corrupt(format!("job {job_id}'s metrics: {e}")))
            })
            .collect()
    }

    async fn append_job_log(
        &self,
        job_id: i64,
        level: LogLevel,
        message: &str,
        at: Micros,
        keep: i64,
    ) -> Result<()> {
        let mut tx = self.state.write.begin().await?;
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

    async fn job_logs(&self, job_id: i64, limit: u32) -> Result<Vec<JobLogLine>> {
        let rows = sqlx::query(
            "SELECT seq, at, level, message FROM job_logs WHERE job_id = $1
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(job_id)
        .bind(i64::from(limit))
        .fetch_all(&self.state.read)
        .await?;
        let mut lines = rows
            .iter()
            .map(log_line_from_row)
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
            .execute(&self.state.write)
            .await?;
        Ok(())
    }

    async fn remember_export_identifiers(&self, job_id: i64, sent: &[(i64, String)]) -> Result<()> {
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
        let mut tx = self.state.write.begin().await?;
        for part in statement_chunks(&sent) {
            let sql = format!(
                "INSERT INTO export_identifiers (job_id, profile_id, identifier) VALUES {}
                 ON CONFLICT (job_id, profile_id) DO UPDATE SET identifier = excluded.identifier
                 WHERE export_identifiers.identifier <> excluded.identifier",
                self.dialect.params().rows(part.len(), 3)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (profile, identifier) in part {
                q = q.bind(job_id).bind(*profile).bind(*identifier);
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
        let select = "SELECT profile_id, identifier FROM export_identifiers
                      WHERE job_id = {p} AND profile_id IN ({ids})";
        let mut out = Vec::new();
        for q in per_id_chunk(self.dialect, select, job_id, profile_ids) {
            for r in q.fetch_all(&self.state.read).await? {
                out.push((r.try_get(0)?, r.try_get(1)?));
            }
        }
        Ok(out)
    }

    async fn forget_export_identifiers(&self, job_id: i64, profile_ids: &[i64]) -> Result<()> {
        let delete = "DELETE FROM export_identifiers WHERE job_id = {p} AND profile_id IN ({ids})";
        for q in per_id_chunk(self.dialect, delete, job_id, profile_ids) {
            q.execute(&self.state.write).await?;
        }
        Ok(())
    }
}
