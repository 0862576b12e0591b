//! Destinations. Each sink is a folder shaped like Vector's sinks: `config.rs` (what the job
//! is told), `request_builder.rs` (changes → coalesced request bodies), `service.rs` (one
//! request, its classification, the rate limiter), `sink.rs` (the driver: source → batches →
//! requests in flight → acknowledgement, retries and metrics), `tests.rs`.

pub mod braze;
