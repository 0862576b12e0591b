//! `tributary import csv FILE --stream S --url URL --token T`: a one-off load of a file into a
//! running server. The file (also `.gz`, `.zip`, `.gpg` with `--pgp-key`) is checked here
//! first, whole, with the server's own CSV decoder, so a file with a bad row (without
//! `--droperrors`) sends nothing; then it is re-cut into chunks of rows, each with the header,
//! and posted to `/collect/bulk/{stream}` one after the other, so it works against a remote
//! install or a cluster alike and memory stays at one chunk. A progress bar on a terminal,
//! plain log lines otherwise; a summary at the end.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::progress::{Progress, Unit};
use anyhow::{Context, bail};
use tributary_imports::PgpKey;
use tributary_imports::unpack::{Counted, Failing};
use tributary_sources::{CsvOptions, DecodeOptions, decode_csv_stream};

#[derive(clap::Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    format: Format,
}

#[derive(clap::Subcommand)]
enum Format {
    /// A CSV file with a header row (`.csv`, `.csv.gz`, `.zip`, and `.gpg`/`.pgp`/`.asc`).
    Csv(CsvArgs),
}

#[derive(clap::Args)]
pub struct CsvArgs {
    /// The file to load.
    file: PathBuf,
    /// The stream the rows go to.
    #[arg(long)]
    stream: String,
    /// The server's base URL.
    #[arg(long, env = "TRIBUTARY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An access token that may collect into the account.
    #[arg(long, env = "TRIBUTARY_TOKEN", hide_env_values = true)]
    token: String,
    /// `,` (default), `|`, `;`, or `t` for tab.
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// The column holding each row's event time (the receive time otherwise).
    #[arg(long)]
    timestamp_field: Option<String>,
    /// Skip bad rows (they are listed with their lines) instead of refusing the file.
    #[arg(long)]
    droperrors: bool,
    /// An ASCII-armoured PGP private key, for encrypted files.
    #[arg(long)]
    pgp_key: Option<PathBuf>,
    /// The PGP key's passphrase.
    #[arg(long, env = "TRIBUTARY_PGP_PASSPHRASE", hide_env_values = true)]
    pgp_passphrase: Option<String>,
    /// Rows per request.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    chunk_rows: u32,
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    match args.format {
        Format::Csv(csv) => run_csv(csv).await,
    }
}

struct Source {
    path: PathBuf,
    name: String,
    pgp: Option<PgpKey>,
    read: Arc<AtomicU64>,
}

impl Source {
    fn open(&self) -> anyhow::Result<Box<dyn Read + Send>> {
        let file = std::fs::File::open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        let counted = Box::new(Counted {
            inner: std::io::BufReader::new(file),
            read: self.read.clone(),
        });
        tributary_imports::unpack::by_name(&self.name, counted, self.pgp.as_ref())
            .map_err(anyhow::Error::msg)
    }
}

async fn run_csv(args: CsvArgs) -> anyhow::Result<()> {
    tributary_core::validate_stream_name(&args.stream).map_err(anyhow::Error::msg)?;
    let delimiter = CsvOptions::parse_delimiter(&args.delimiter).map_err(anyhow::Error::msg)?;
    let pgp = match &args.pgp_key {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the PGP key {}", path.display()))?;
            let passphrase = args.pgp_passphrase.clone().unwrap_or_default();
            Some(PgpKey::from_armored(&text, passphrase).map_err(anyhow::Error::msg)?)
        }
    };
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let source = Arc::new(Source {
        name: args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: args.file.clone(),
        pgp,
        read: Arc::new(AtomicU64::new(0)),
    });

    // 1. The whole file checked here, as the server would: bad rows found before sending any.
    let checking = source.clone();
    let options = DecodeOptions {
        timestamp_field: args.timestamp_field.clone(),
        drop_errors: args.droperrors,
    };
    let csv = CsvOptions {
        delimiter,
        ..CsvOptions::default()
    };
    let check = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let open = || -> Box<dyn Read> {
            match checking.open() {
                Ok(r) => r,
                Err(e) => Box::new(Failing(e.to_string())),
            }
        };
        decode_csv_stream(&open, &options, &csv, usize::MAX, &mut |_| true)
            .map_err(|e| anyhow::anyhow!("{}: {e}", checking.path.display()))
    })
    .await??;
    source.read.store(0, Ordering::Relaxed);

    // 2. Chunks of rows, each a CSV with the header, posted one after the other.
    let progress = Progress::new("import", "rows", Unit::Bytes, size);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Vec<u8>>>(2);
    let chunking = source.clone();
    let rows_per_chunk = args.chunk_rows as usize;
    let reader = tokio::task::spawn_blocking(move || {
        if let Err(e) = cut_chunks(&chunking, delimiter, rows_per_chunk, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    // A base URL with a path (`https://host/tributary`) keeps it: joined as a folder.
    let base = format!("{}/", args.url.trim_end_matches('/'));
    let mut endpoint = reqwest::Url::parse(&base)
        .with_context(|| format!("--url {:?} is not a URL", args.url))?
        .join(&format!("collect/bulk/{}", args.stream))?;
    {
        let mut q = endpoint.query_pairs_mut();
        if args.droperrors {
            q.append_pair("droperrors", "true");
        }
        if let Some(f) = &args.timestamp_field {
            q.append_pair("timestamp_field", f);
        }
        if args.delimiter != "," {
            q.append_pair("delimiter", &args.delimiter);
        }
    }
    let (mut accepted, mut rejected_by_server) = (0u64, 0u64);
    while let Some(chunk) = rx.recv().await {
        let body = chunk?;
        let response = http
            .post(endpoint.clone())
            .bearer_auth(&args.token)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .with_context(|| format!("sending to {}", args.url))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "the server refused a chunk ({status}): {}; {accepted} rows were stored before it",
                answer["message"].as_str().unwrap_or("no message")
            );
        }
        accepted += answer["data"]["message_count"].as_u64().unwrap_or(0);
        rejected_by_server += answer["data"]["rejected_count"].as_u64().unwrap_or(0);
        progress.update(source.read.load(Ordering::Relaxed), accepted);
    }
    reader.await?;
    progress.finish(source.read.load(Ordering::Relaxed), accepted);
    println!(
        "{}: {accepted} rows stored in stream {}, {} rejected",
        args.file.display(),
        args.stream,
        check.rejected_count.max(rejected_by_server as usize)
    );
    for r in check.rejected.iter().take(20) {
        println!("  line {}: {}", r.line, r.message);
    }
    if check.rejected_count > 20 {
        println!("  ... and {} more", check.rejected_count - 20);
    }
    Ok(())
}

/// Re-cuts the file into CSV chunks of `rows` records, each with the header row.
fn cut_chunks(
    source: &Source,
    delimiter: u8,
    rows: usize,
    tx: &tokio::sync::mpsc::Sender<anyhow::Result<Vec<u8>>>,
) -> anyhow::Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(source.open()?);
    let header = reader.byte_headers()?.clone();
    let new_chunk = || -> anyhow::Result<csv::Writer<Vec<u8>>> {
        let mut w = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_writer(Vec::new());
        w.write_byte_record(&header)?;
        Ok(w)
    };
    let mut chunk = new_chunk()?;
    let mut in_chunk = 0;
    let mut record = csv::ByteRecord::new();
    loop {
        // A row the check let through with --droperrors may still fail to parse here; the
        // server rejects it again, and the check's list already names it.
        let more = match reader.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(_) => continue,
        };
        if more {
            chunk.write_byte_record(&record)?;
            in_chunk += 1;
        }
        if in_chunk == rows || (!more && in_chunk > 0) {
            let body = chunk.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
            if tx.blocking_send(Ok(body)).is_err() {
                return Ok(());
            }
            chunk = new_chunk()?;
            in_chunk = 0;
        }
        if !more {
            return Ok(());
        }
    }
}
