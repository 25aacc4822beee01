//! Where `tail` stands: a file (by the hash of its first line, plus inode as a hint) and a byte offset, and
//! the end of the batch in flight, written down before it is sent so a crash resends exactly that batch.

use std::io::Write as _;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Hash of the file's first line: survives rename and compression, unlike the inode.
    pub head: String,
    pub dev: u64,
    pub ino: u64,
    /// Bytes of the (uncompressed) file already delivered.
    pub offset: u64,
    /// Set while a batch `[offset, pending_end)` is being delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_end: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is not a checkpoint: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
}

impl Checkpoint {
    /// The checkpoint in `path`, `None` if there is none yet.
    pub fn load(path: &Path) -> Result<Option<Self>, CheckpointError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| CheckpointError::Format {
                        path: path.display().to_string(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Replace the checkpoint atomically and durably (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        let text = serde_json::to_vec(self).map_err(|e| io(e.into()))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }
}
