//! `tributary rebuild`: resets an account's profiles and replays its raw events through the
//! current mappings. Safe while servers run: it takes the account's pipeline lease like any
//! node, and the servers keep answering while profiles fill back in.

use std::path::PathBuf;

use anyhow::Context;
use tributary_engine::{Engine, EngineConfig};

use crate::progress::{Progress, Unit};

#[derive(clap::Args)]
pub struct RebuildArgs {
    /// The account number.
    #[arg(long, default_value_t = 1)]
    account: i64,
    #[arg(long, env = "TRIBUTARY_DATA_DIR", default_value = "./tributary-data")]
    data_dir: PathBuf,
    #[arg(long, env = "TRIBUTARY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

pub async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    crate::private_files::prepare_data_dir(&args.data_dir)?;
    let store = tributary_store::open(args.database_url.as_deref(), &args.data_dir)
        .await
        .context("opening the store")?;
    anyhow::ensure!(
        store.account(args.account).await?.is_some(),
        "account {} does not exist",
        args.account
    );
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let started = std::time::Instant::now();
    engine.rebuild(args.account).await?;

    // The replay runs in its own task; this one watches the account's pipeline lag (events
    // received but not yet applied) fall, which is the progress of the rebuild.
    let lag = || async {
        let streams = store.pipeline_lag(args.account).await?;
        anyhow::Ok(
            streams
                .iter()
                .map(|(_, lag)| (*lag).max(0) as u64)
                .sum::<u64>(),
        )
    };
    let mut total = lag().await?;
    let mut progress = Progress::new("rebuild", "events", Unit::Items, total);
    let replay = tokio::spawn({
        let engine = engine.clone();
        let aid = args.account;
        async move { engine.catch_up(aid).await }
    });
    progress.update(0, 0);
    while !replay.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // A failed read of the lag only skips one update of the bar; the replay decides.
        let Ok(left) = lag().await else { continue };
        if left > total {
            // Events that arrived while the rebuild ran are replayed too.
            total = left;
            progress.set_total(total);
        }
        let done = total - left;
        progress.update(done, done);
    }
    let stats = replay.await.context("the replay task failed")??;
    progress.finish(stats.events, stats.events);
    println!(
        "rebuilt account {}: {} events, {} profiles, {} merges in {:.1} s",
        args.account,
        stats.events,
        stats.profiles_created,
        stats.merges,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
