//! The Kubernetes side every controller stands on: the client, the shared watches and their
//! indexes, events, status writes, leader election, start-up checks and the tenant's identity.

pub mod cache;
pub mod cache_index;
pub mod events;
#[cfg(test)]
pub mod fake_api;
pub mod kube_client;
pub mod leader;
pub mod runs_first;
pub mod startup;
pub mod status_writer;
pub mod tenancy;
pub mod watch_stream;
