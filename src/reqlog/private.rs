//! The request log holds prompts and answers: its files are created 0600
//! and its directories 0700, whatever the umask (a umask can only take bits
//! away). A log directory that already exists with group or other access is
//! tightened to 0700 (with a warning saying so), and the SQLite database
//! file (and its `-wal`/`-shm`, which SQLite creates with the database's
//! mode) to 0600.

use std::io;
use std::path::Path;

/// Mode of the log's directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the log's files and database.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its missing parents) 0700; an existing `dir` with
/// group or other access is tightened to 0700, with a warning.
pub fn dir(dir: &Path) -> io::Result<()> {
    create_dir(dir)?;
    tighten(dir, DIR_MODE, "request log directory");
    Ok(())
}

/// Creates `dir` (and its missing parents) 0700 when missing; an existing
/// one is left as it is (it may be a shared directory, such as the working
/// directory holding the database file).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Opens a new file for writing, 0600; fails if it exists (a record's file
/// is never replaced).
pub fn create_file(path: &Path) -> io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(FILE_MODE);
    }
    o.open(path)
}

/// The SQLite database at `path` made private before SQLite opens it: a
/// missing file is created empty with 0600 (SQLite takes an empty file as a
/// new database, and gives its `-wal` and `-shm` the same mode); an
/// existing one, and its `-wal`/`-shm`, are tightened to 0600.
pub fn sqlite_file(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    match create_file(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        if p.exists() {
            tighten(&p, FILE_MODE, "request log database file");
        }
    }
    Ok(())
}

/// Takes group and other access away from `path` when it has any (and is
/// ours to change), with a warning; a warning alone when it cannot.
fn tighten(path: &Path, mode: u32, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let current = meta.permissions().mode() & 0o777;
        if current & 0o077 == 0 {
            return;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                was = format!("{current:o}"),
                now = format!("{mode:o}"),
                "{what} was readable by other users; its mode was tightened"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                mode = format!("{current:o}"),
                error = %e,
                "{what} is readable by other users and its mode could not be tightened"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode, what);
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_private() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/requests");
        dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        let f = d.join("x.log");
        create_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        // Never replaced.
        assert_eq!(
            create_file(&f).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn loose_existing_ones_are_tightened() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("requests");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        let db = t.path().join("log.db");
        let wal = t.path().join("log.db-wal");
        for p in [&db, &wal] {
            std::fs::write(p, b"").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        sqlite_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }
}
