//! Services: a virtual IP spread over backends. Today the selection (Maglev); the
//! translation through connection tracking is the next part of issue 16.
pub mod maglev;
#[cfg(test)]
mod tests;
