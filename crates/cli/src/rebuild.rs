//! `tributary rebuild`: resets an account's profiles and replays its raw events through the
//! current mappings. Safe while servers run: it takes the account's pipeline lease like any
//! node, and the servers keep answering while profiles fill back in.

use std::path::PathBuf;

use anyhow::Context;
use tributary_engine::{Engine, EngineConfig};

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
    let engine = Engine::new(store, EngineConfig::default());
    let started = std::time::Instant::now();
    engine.rebuild(args.account).await?;
    let stats = engine.catch_up(args.account).await?;
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
