//! Moving flow artifacts between steps through the server: a file or directory is packed as
//! tar (entry `file`, or the tree under `dir/`), uploaded after the producing step succeeds
//! and unpacked into the consuming step's working directory before it starts. Symlinks are
//! stored as symlinks, never followed; unpacking refuses entries that leave the target.

use std::path::{Path, PathBuf};
use std::time::Duration;
use zenith_model::{AttemptId, NodeId};

/// Uploads are retried for about this long while the server is away.
const UPLOAD_PATIENCE: Duration = Duration::from_secs(60);

/// Talks to `/agent/v1/artifacts`.
#[derive(Clone)]
pub struct Transfer {
    pub http: reqwest::Client,
    pub servers: std::sync::Arc<crate::endpoints::Endpoints>,
    pub token: String,
    pub node: NodeId,
    /// Scratch space for tar files in flight.
    pub spool: PathBuf,
}

fn url(server: &str, key: &str) -> String {
    format!("{}/agent/v1/artifacts/{key}", server.trim_end_matches('/'))
}

impl Transfer {
    /// Packs `src` (file or directory) and uploads it under `key` for `attempt`, retrying
    /// with backoff while the server cannot be reached.
    pub async fn put(&self, attempt: AttemptId, key: &str, src: &Path) -> Result<u64, String> {
        let tar = self
            .spool
            .join(format!("{attempt}-{}.tar", key.replace('/', "_")));
        let (s, t) = (src.to_path_buf(), tar.clone());
        tokio::task::spawn_blocking(move || pack(&s, &t))
            .await
            .map_err(|e| e.to_string())??;
        let result = self.upload(attempt, key, &tar).await;
        let _ = tokio::fs::remove_file(&tar).await;
        result
    }

    async fn upload(&self, attempt: AttemptId, key: &str, tar: &Path) -> Result<u64, String> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let file = tokio::fs::File::open(tar)
                .await
                .map_err(|e| e.to_string())?;
            let len = file.metadata().await.map_err(|e| e.to_string())?.len();
            let resp = self
                .http
                .put(url(&self.servers.current(), key))
                .bearer_auth(&self.token)
                .query(&[
                    ("attempt", attempt.to_string()),
                    ("node", self.node.to_string()),
                ])
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::from(file))
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => return Ok(len),
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    return Err(format!("server refused the upload ({status}): {body}"));
                }
                Ok(r) if started.elapsed() > UPLOAD_PATIENCE => {
                    return Err(format!("server answered {}", r.status()))
                }
                Err(e) if started.elapsed() > UPLOAD_PATIENCE => return Err(e.to_string()),
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Downloads the artifact `key` and places it at `dest` (a file or a directory).
    pub async fn fetch(&self, key: &str, dest: &Path) -> Result<(), String> {
        let resp = self
            .http
            .get(url(&self.servers.current(), key))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("server answered {}", resp.status()));
        }
        let tar = self.spool.join(format!(
            "in-{}-{}.tar",
            std::process::id(),
            key.replace('/', "_")
        ));
        let mut file = tokio::fs::File::create(&tar)
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = resp.bytes_stream();
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            file.write_all(&chunk).await.map_err(|e| e.to_string())?;
        }
        file.flush().await.map_err(|e| e.to_string())?;
        drop(file);
        let (t, d) = (tar.clone(), dest.to_path_buf());
        let r = tokio::task::spawn_blocking(move || unpack(&t, &d))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tokio::fs::remove_file(&tar).await;
        r
    }
}

/// Packs a file as entry `file`, a directory as the tree under `dir/`.
fn pack(src: &Path, tar: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(src).map_err(|_| "not found".to_string())?;
    let out = std::fs::File::create(tar).map_err(|e| e.to_string())?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all("dir", src).map_err(|e| e.to_string())?;
    } else {
        let mut f = std::fs::File::open(src).map_err(|e| e.to_string())?;
        b.append_file("file", &mut f).map_err(|e| e.to_string())?;
    }
    b.into_inner()
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())
}

/// Unpacks into a fresh directory beside `dest`, then moves the file or tree into place.
fn unpack(tar: &Path, dest: &Path) -> Result<(), String> {
    let parent = dest.parent().ok_or("destination has no parent")?;
    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    let tmp = tempfile::Builder::new()
        .prefix(".zenith-unpack-")
        .tempdir_in(parent)
        .map_err(|e| e.to_string())?;
    let f = std::fs::File::open(tar).map_err(|e| e.to_string())?;
    // `unpack` refuses entries with `..` or absolute paths.
    tar::Archive::new(f)
        .unpack(tmp.path())
        .map_err(|e| format!("bad archive: {e}"))?;
    let file = tmp.path().join("file");
    let dir = tmp.path().join("dir");
    let src = if dir.is_dir() {
        dir
    } else if file.exists() {
        file
    } else {
        return Err("empty archive".into());
    };
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(format!("{} already exists", dest.display()));
    }
    std::fs::rename(&src, dest).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn files_and_trees_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/a.txt"), "alpha").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();
        let tar = d.path().join("t.tar");
        pack(&tree, &tar).unwrap();
        let out = d.path().join("work/in/tree");
        unpack(&tar, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("sub/a.txt")).unwrap(),
            "alpha"
        );
        assert!(std::fs::symlink_metadata(out.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        std::fs::write(d.path().join("f"), "one file").unwrap();
        pack(&d.path().join("f"), &tar).unwrap();
        unpack(&tar, &d.path().join("work/g")).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("work/g")).unwrap(),
            "one file"
        );
        assert!(
            unpack(&tar, &d.path().join("work/g")).is_err(),
            "no overwrite"
        );
        assert!(pack(&d.path().join("missing"), &tar).is_err());
    }
}
