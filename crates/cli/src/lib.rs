//! The `tributary` binary's library half: [`compose::run`], the composition root that starts the
//! pipeline worker, the job runner with this build's workflows, and the HTTP server.

pub mod compose;
