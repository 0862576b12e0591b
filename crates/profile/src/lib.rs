//! The profile model, in one place for everything that reads or writes profiles: the
//! pipeline (`engine`) builds them, the Braze export (`sinks`) reads the identifier it sends,
//! the API (`server`) renders them.
//!
//! - [`ProfileState`] (`state.rs`): a profile's merged fields and identities, how values
//!   combine by MERGEOP, and its stored JSON form.
//! - [`Plans`] (`plans.rs`): an account's LQL queries compiled, by stream; [`Mapped`] is what
//!   one raw event contributes.
//! - [`ProfileView`] (`view.rs`): a profile as FilterQL sees it, meta fields included.
//! - [`identifier`] (`identifier.rs`): the text a profile is known by elsewhere.
//! - [`IncludeGraph`] (`include_graph.rs`): the account's audiences by slug and the INCLUDE
//!   graph between them, for the pipeline and the API alike.
//!
//! Invariant: no I/O here; what is stored is the store's business.

mod identifier;
mod include_graph;
mod plans;
pub mod state;
mod view;

pub use identifier::identifier;
pub use include_graph::IncludeGraph;
pub use plans::{Mapped, Plans};
pub use state::{CAPPED_SET_SIZE, FieldSpec, FieldState, ProfileState, StateError};
pub use view::{EVENT_META_FIELDS, META_FIELDS, ProfileView};
