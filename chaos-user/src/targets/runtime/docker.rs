//! The Docker Engine API (Docker's socket, and Podman's Docker-compatible one): the running
//! containers with their names and labels, and one container's init pid.
use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::{Container, http};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    state: State,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct State {
    #[serde(default)]
    pid: u32,
}

/// The running containers (`GET /containers/json`), without their pids (see [`pid`]).
pub(super) fn list(runtime: &str, socket: &Path) -> Result<Vec<Container>, String> {
    let body = http::get(socket, "/containers/json")?;
    let listed: Vec<Listed> = serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))?;
    Ok(listed
        .into_iter()
        .map(|c| Container {
            runtime: runtime.to_owned(),
            id: c.id,
            // The API names containers "/web"; users write "web".
            names: c.names.iter().map(|n| n.trim_start_matches('/').to_owned()).collect(),
            labels: c.labels.unwrap_or_default(),
            pid: None,
        })
        .collect())
}

/// The init pid of container `id` (`GET /containers/<id>/json`, `State.Pid`); 0 if not running.
pub(super) fn pid(socket: &Path, id: &str) -> Result<u32, String> {
    let body = http::get(socket, &format!("/containers/{id}/json"))?;
    let inspected: Inspected = serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))?;
    Ok(inspected.state.pid)
}
