pub mod admin;
pub mod collect;
mod definitions;
pub mod membership;
pub mod ops;
pub mod profiles;
pub mod queries;
pub mod segments;
pub mod streams;
