//! A writer that behaves like the kube-apiserver's log backend (gopkg.in/natefinch/lumberjack.v2): each
//! event is one `write` of a whole line; when the file is full it is closed, renamed to
//! `<name>-<timestamp><ext>` (timestamp `2006-01-02T15-04-05.000`), and a new file is created; with
//! compression a backup is then gzip'd to `<backup>.gz` (written under its final name, then the
//! uncompressed copy is removed).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub struct Lumberjack {
    live: PathBuf,
    file: Option<File>,
    lines_in_file: usize,
    /// Lines per file before rotation (lumberjack counts megabytes; lines keep tests small).
    pub max_lines: usize,
    /// Compress every `compress_every`-th backup (0: never).
    pub compress_every: usize,
    pub rotations: usize,
}

impl Lumberjack {
    pub fn new(live: &Path, max_lines: usize, compress_every: usize) -> Self {
        Self {
            live: live.to_path_buf(),
            file: None,
            lines_in_file: 0,
            max_lines,
            compress_every,
            rotations: 0,
        }
    }

    /// Write one line (newline added), rotating first if the file is full.
    pub fn write(&mut self, line: &str) {
        if self.lines_in_file >= self.max_lines {
            self.rotate();
        }
        let file = self.file.get_or_insert_with(|| open_append(&self.live));
        file.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.lines_in_file += 1;
    }

    pub fn rotate(&mut self) {
        self.file = None;
        self.rotations += 1;
        // A fake clock, one minute per rotation, keeps names distinct and ordered.
        let n = self.rotations;
        let stamp = format!("2026-11-26T{:02}-{:02}-00.000", n / 60, n % 60);
        let name = self
            .live
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let (stem, ext) = name
            .rsplit_once('.')
            .map_or((name.as_str(), String::new()), |(s, e)| {
                (s, format!(".{e}"))
            });
        let backup = self.live.with_file_name(format!("{stem}-{stamp}{ext}"));
        std::fs::rename(&self.live, &backup).unwrap();
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&self.live)
                .unwrap(),
        );
        self.lines_in_file = 0;
        if self.compress_every > 0 && n.is_multiple_of(self.compress_every) {
            compress(&backup);
        }
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

fn compress(path: &Path) {
    let data = std::fs::read(path).unwrap();
    let gz_path = PathBuf::from(format!("{}.gz", path.display()));
    let mut gz = flate2::write::GzEncoder::new(
        File::create(&gz_path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(&data).unwrap();
    gz.finish().unwrap().sync_all().unwrap();
    std::fs::remove_file(path).unwrap();
}
