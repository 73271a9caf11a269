//! Who is calling and on whose behalf: projects and their tenancies, users, sessions (refresh
//! tokens), access tokens, request authentication, and the hashing and randomness they rest on.

pub mod auth;
pub mod codes;
pub mod crypto;
pub mod deleted_rows;
pub mod es256;
pub mod passwords;
pub mod projects;
pub mod rotation;
pub mod sealed;
pub mod sessions;
pub mod tenancy;
pub mod tokens;
pub mod users;
