pub mod admin;
pub mod collect;
pub mod ops;
pub mod streams;
