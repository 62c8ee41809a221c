//! Moving flow artifacts between steps through the server: a file or directory is packed as
//! tar (entry `file`, or the tree under `dir/`), uploaded after the producing step succeeds
//! and unpacked into the consuming step's working directory before it starts. Symlinks are
//! stored as symlinks, never followed; unpacking refuses entries that leave the target.

use std::path::{Path, PathBuf};
use std::time::Duration;
use zenith_model::{AttemptId, NodeId};

/// Uploads are retried for about this long while the server is away.
const UPLOAD_PATIENCE: Duration = Duration::from_secs(60);

/// Why an artifact did not move. The executor puts the text, after the artifact's name, into
/// the attempt's result.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file or directory the step named does not exist.
    #[error("not found")]
    SourceMissing,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The server will not take this upload however often it is retried.
    #[error("server refused the upload ({status}): {body}")]
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("server answered {status}")]
    Status { status: reqwest::StatusCode },
    #[error("destination has no parent")]
    NoParent,
    #[error("bad archive: {0}")]
    BadArchive(std::io::Error),
    #[error("empty archive")]
    EmptyArchive,
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    /// The blocking thread that packs or unpacks failed (it panicked).
    #[error(transparent)]
    Blocking(#[from] tokio::task::JoinError),
}

/// Talks to `/agent/v1/artifacts`.
#[derive(Clone)]
pub struct Transfer {
    pub http: reqwest::Client,
    pub servers: std::sync::Arc<crate::endpoints::Endpoints>,
    pub credential: std::sync::Arc<crate::credential::Credential>,
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
    pub async fn put(
        &self,
        attempt: AttemptId,
        key: &str,
        src: &Path,
    ) -> Result<u64, ArtifactError> {
        let tar = self
            .spool
            .join(format!("{attempt}-{}.tar", key.replace('/', "_")));
        let (s, t) = (src.to_path_buf(), tar.clone());
        tokio::task::spawn_blocking(move || pack(&s, &t)).await??;
        let result = self.upload(attempt, key, &tar).await;
        remove_spooled(&tar).await;
        result
    }

    async fn upload(
        &self,
        attempt: AttemptId,
        key: &str,
        tar: &Path,
    ) -> Result<u64, ArtifactError> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let file = tokio::fs::File::open(tar).await?;
            let len = file.metadata().await?.len();
            let resp = self
                .http
                .put(url(&self.servers.current(), key))
                .bearer_auth(self.credential.bearer())
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
                    return Err(ArtifactError::Refused { status, body });
                }
                Ok(r) if started.elapsed() > UPLOAD_PATIENCE => {
                    return Err(ArtifactError::Status { status: r.status() })
                }
                Err(e) if started.elapsed() > UPLOAD_PATIENCE => return Err(e.into()),
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Downloads the artifact `key` for `attempt` (an attempt of the same run, on this node)
    /// and places it at `dest` (a file or a directory).
    pub async fn fetch(
        &self,
        attempt: AttemptId,
        key: &str,
        dest: &Path,
    ) -> Result<(), ArtifactError> {
        let resp = self
            .http
            .get(url(&self.servers.current(), key))
            .bearer_auth(self.credential.bearer())
            .query(&[("attempt", attempt.to_string())])
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(ArtifactError::Status {
                status: resp.status(),
            });
        }
        let tar = self.spool.join(format!(
            "in-{}-{}.tar",
            std::process::id(),
            key.replace('/', "_")
        ));
        if let Err(e) = download(resp, &tar).await {
            // A download cut short leaves nothing behind in the spool.
            remove_spooled(&tar).await;
            return Err(e);
        }
        let (t, d) = (tar.clone(), dest.to_path_buf());
        let r = tokio::task::spawn_blocking(move || unpack(&t, &d)).await?;
        remove_spooled(&tar).await;
        r
    }
}

/// Writes a response body to `tar` (0600).
async fn download(resp: reqwest::Response, tar: &Path) -> Result<(), ArtifactError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::from(crate::private_file())
        .write(true)
        .create(true)
        .truncate(true)
        .open(tar)
        .await?;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).await?;
    }
    file.flush().await?;
    Ok(())
}

/// Deletes a tar file that has done its work. Failing to only leaves it in the spool, which
/// the next agent start empties: logged, not fatal to the artifact that moved.
async fn remove_spooled(tar: &Path) {
    match tokio::fs::remove_file(tar).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // never written
        Err(e) => {
            tracing::warn!(path = %tar.display(), error = %e, "cannot remove a spooled artifact")
        }
    }
}

/// Packs a file as entry `file`, a directory as the tree under `dir/`.
fn pack(src: &Path, tar: &Path) -> Result<(), ArtifactError> {
    let meta = std::fs::symlink_metadata(src).map_err(|_| ArtifactError::SourceMissing)?;
    let out = crate::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tar)?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all("dir", src)?;
    } else {
        let mut f = std::fs::File::open(src)?;
        b.append_file("file", &mut f)?;
    }
    Ok(b.into_inner().and_then(|f| f.sync_all())?)
}

/// Unpacks into a fresh directory beside `dest`, then moves the file or tree into place.
fn unpack(tar: &Path, dest: &Path) -> Result<(), ArtifactError> {
    let parent = dest.parent().ok_or(ArtifactError::NoParent)?;
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".zenith-unpack-")
        .tempdir_in(parent)?;
    let f = std::fs::File::open(tar)?;
    // `unpack` refuses entries with `..` or absolute paths.
    tar::Archive::new(f)
        .unpack(tmp.path())
        .map_err(ArtifactError::BadArchive)?;
    let file = tmp.path().join("file");
    let dir = tmp.path().join("dir");
    let src = if dir.is_dir() {
        dir
    } else if file.exists() {
        file
    } else {
        return Err(ArtifactError::EmptyArchive);
    };
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(ArtifactError::Exists(dest.to_path_buf()));
    }
    Ok(std::fs::rename(&src, dest)?)
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
        let g = d.path().join("work/g");
        assert_eq!(
            unpack(&tar, &g).unwrap_err().to_string(),
            format!("{} already exists", g.display()),
            "no overwrite"
        );
        assert_eq!(
            pack(&d.path().join("missing"), &tar)
                .unwrap_err()
                .to_string(),
            "not found"
        );
    }
}
