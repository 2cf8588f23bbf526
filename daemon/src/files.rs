//! Reading the files an author or a technician names (configuration, script, materials,
//! avatar, secrets): regular files only — a FIFO would hang the reader for ever, a device
//! would never end — and at most [`MAX_FILE_BYTES`], so a wrong path fails at once with a
//! reason instead of stalling or filling memory.

use std::io::Read;
use std::path::Path;

/// The largest file read: far above a 100,000-product catalog (about 25 MB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Opens `path` if it is a regular file no larger than [`MAX_FILE_BYTES`].
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(refuse(format!(
            "{} MiB, more than the {} MiB a file may be",
            meta.len() >> 20,
            MAX_FILE_BYTES >> 20
        )));
    }
    std::fs::File::open(path)
}

/// The text of `path` (see [`open_regular`]).
pub fn read_regular(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_regular_bytes(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The bytes of `path` (see [`open_regular`]).
pub fn read_regular_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("emcee-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("script.txt"), "Hello.\n").unwrap();
        assert_eq!(read_regular(&dir.join("script.txt")).unwrap(), "Hello.\n");
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let started = std::time::Instant::now();
        for special in [fifo.as_path(), dir.as_path(), Path::new("/dev/zero")] {
            let e = read_regular(special).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{}: {e}", special.display());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused at once, never opened");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
