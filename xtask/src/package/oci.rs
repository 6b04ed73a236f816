//! An image as an OCI image layout in one tar archive, written without a container runtime or a
//! network: one gzipped layer, its config, a manifest and an index, each stored under
//! `blobs/sha256/` by the SHA-256 of its bytes, as the OCI image spec lays them out. The same
//! archive also carries Docker's `manifest.json`, so `docker load` of Docker before 25 (which
//! reads only that file; Debian 12 has 20.10) and of Docker 25+, `podman load`, `skopeo` and
//! `ctr images import` all take it.
use std::io::Write as _;

use anyhow::Context as _;
use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// A file of the image's filesystem: its bytes, where it goes, its mode.
pub struct File {
    pub data: Vec<u8>,
    /// Path inside the image, without a leading slash.
    pub path: String,
    pub mode: u32,
}

/// What runs, and how the image is named.
pub struct Image {
    pub files: Vec<File>,
    /// The repository name, e.g. `chaos`.
    pub repository: String,
    pub tag: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: serde_json::Value,
    /// Seconds since the epoch: the files' times and the image's creation date.
    pub created: u64,
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The archive's bytes.
pub fn archive(image: &Image) -> anyhow::Result<Vec<u8>> {
    let layer = layer_tar(image)?;
    let diff_id = digest(&layer);
    let mut gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    gz.write_all(&layer)?;
    let layer_gz = gz.finish()?;
    let created = rfc3339(image.created);
    let config = serde_json::to_vec(&json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": image.entrypoint,
            "Cmd": image.cmd,
            "Env": ["PATH=/usr/bin"],
            "WorkingDir": "/",
            "Labels": image.labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": created, "created_by": "cargo xtask package" }],
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": { "mediaType": CONFIG, "digest": digest(&config), "size": config.len() },
        "layers": [{ "mediaType": LAYER, "digest": digest(&layer_gz), "size": layer_gz.len() }],
        "annotations": image.labels,
    }))?;
    let reference = format!("{}:{}", image.repository, image.tag);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": {
                // The OCI name of the tag, and the full name containerd gives what it imports.
                "org.opencontainers.image.ref.name": image.tag,
                "io.containerd.image.name": format!("docker.io/library/{reference}"),
            },
        }],
    }))?;
    let docker_manifest = serde_json::to_vec(&json!([{
        "Config": blob_path(&config),
        "RepoTags": [reference],
        "Layers": [blob_path(&layer_gz)],
    }]))?;

    let mut archive = tar::Builder::new(Vec::new());
    append(&mut archive, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644, image.created)?;
    append(&mut archive, "index.json", &index, 0o644, image.created)?;
    append(&mut archive, "manifest.json", &docker_manifest, 0o644, image.created)?;
    append_dir(&mut archive, "blobs/", image.created)?;
    append_dir(&mut archive, "blobs/sha256/", image.created)?;
    for blob in [&layer_gz, &config, &manifest] {
        append(&mut archive, &blob_path(blob), blob, 0o644, image.created)?;
    }
    archive.into_inner().context("finishing the image archive")
}

/// The image's one layer: every file, and each directory above it once, owned by root.
fn layer_tar(image: &Image) -> anyhow::Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    let mut directories: Vec<String> = Vec::new();
    for file in &image.files {
        let parts: Vec<&str> = file.path.split('/').collect();
        for depth in 1..parts.len() {
            let directory = format!("{}/", parts[..depth].join("/"));
            if !directories.contains(&directory) {
                append_dir(&mut layer, &directory, image.created)?;
                directories.push(directory);
            }
        }
        append(&mut layer, &file.path, &file.data, file.mode, image.created)?;
    }
    layer.into_inner().context("finishing the image's layer")
}

fn append(archive: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32, mtime: u64) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    archive.append_data(&mut header, path, data).with_context(|| format!("adding {path} to an archive"))
}

fn append_dir(archive: &mut tar::Builder<Vec<u8>>, path: &str, mtime: u64) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    archive.append_data(&mut header, path, std::io::empty()).with_context(|| format!("adding {path} to an archive"))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Where a blob is stored in the layout: `blobs/sha256/<hex>`.
fn blob_path(bytes: &[u8]) -> String {
    format!("blobs/sha256/{}", digest(bytes).trim_start_matches("sha256:"))
}

/// Seconds since the epoch as RFC 3339 in UTC, e.g. `2026-12-07T18:00:00Z`.
fn rfc3339(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back what [`archive`] wrote: (the reference it names, the layer's paths).
    fn read_back(bytes: &[u8]) -> (String, Vec<String>) {
        use std::io::Read as _;
        let mut files = std::collections::BTreeMap::new();
        for entry in tar::Archive::new(bytes).entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(entry.path().unwrap().display().to_string(), data);
        }
        let docker: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let layer_gz = &files[docker[0]["Layers"][0].as_str().unwrap()];
        let mut layer = Vec::new();
        flate2::read::GzDecoder::new(&layer_gz[..]).read_to_end(&mut layer).unwrap();
        let paths = tar::Archive::new(&layer[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        (docker[0]["RepoTags"][0].as_str().unwrap().to_owned(), paths)
    }

    fn image() -> Image {
        Image {
            files: vec![
                File { data: b"\x7fELF".to_vec(), path: "usr/bin/x".into(), mode: 0o755 },
                File { data: b"lib".to_vec(), path: "lib/x86_64-linux-gnu/libc.so.6".into(), mode: 0o755 },
            ],
            repository: "x".into(),
            tag: "1.0".into(),
            entrypoint: vec!["/usr/bin/x".into()],
            cmd: vec![],
            labels: json!({}),
            created: 1_796_601_600,
        }
    }

    #[test]
    fn the_archive_names_its_blobs_by_digest_and_holds_each_file_once_with_its_directories() {
        let bytes = archive(&image()).unwrap();
        let (reference, paths) = read_back(&bytes);
        assert_eq!(reference, "x:1.0");
        assert_eq!(
            paths,
            ["usr/", "usr/bin/", "usr/bin/x", "lib/", "lib/x86_64-linux-gnu/", "lib/x86_64-linux-gnu/libc.so.6"]
        );
        // Every blob's name is its digest.
        for entry in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                assert_eq!(digest(&data), format!("sha256:{hex}"));
            }
        }
    }

    #[test]
    fn the_same_image_gives_the_same_bytes() {
        assert_eq!(archive(&image()).unwrap(), archive(&image()).unwrap());
        assert_eq!(rfc3339(1_796_601_600), "2026-12-07T00:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
