//! The `segments` layout of the log's files
//! (`proxy_settings.logging.files.layout: segments`): records appended to
//! rolling files, one record per line, instead of a file per request.
//!
//! A line is `{"id":..,"time":..,"events":[..]}`: the events are the lines
//! of the record's per-request file, in order, each the same JSON object.
//! Files are `<dir>/segments/<YYYY-MM-DD>/<HH>-<NNN>.jsonl` (UTC, the time
//! the writer wrote them), rolled at each hour and past `segment_max_bytes`;
//! 0600 in 0700 directories. The writer appends a batch with one write per
//! file; a write that fails is cut back, so a file holds whole lines only.

use std::io::{self, BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::json;

/// The directory under `files.dir` that holds the segments.
pub const DIR: &str = "segments";
/// A segment file's extension.
pub const EXT: &str = "jsonl";

/// The open segment file and the hour it belongs to.
struct Current {
    day: String,
    hour: u32,
    index: u32,
    file: std::fs::File,
    len: u64,
}

/// The writer's side: appends lines to the current segment, rolling it.
pub struct Segments {
    root: PathBuf,
    max_bytes: u64,
    current: Option<Current>,
}

/// A record's line for its per-request file text (`text`: one event per
/// line, each a JSON object without a line break in it).
pub fn line(id: &str, time: &DateTime<Utc>, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + id.len() + 64);
    out.push_str("{\"id\":");
    json::str(&mut out, id);
    out.push_str(",\"time\":");
    json::str(
        &mut out,
        &time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    out.push_str(",\"events\":[");
    let mut first = true;
    for l in text.lines().filter(|l| !l.is_empty()) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(l);
    }
    out.push_str("]}\n");
    out
}

/// The per-request file text a segment line stands for: its events, one per
/// line.
pub fn line_to_text(line: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    let l: Line = serde_json::from_str(line.trim_end())
        .map_err(|e| format!("not a yallmp log segment line: {e}"))?;
    let mut text = String::with_capacity(line.len());
    for e in l.events {
        text.push_str(e.get());
        text.push('\n');
    }
    Ok(text)
}

/// The start of the line of record `id` (what a scan matches on).
fn prefix(id: &str) -> String {
    let mut p = String::from("{\"id\":");
    json::str(&mut p, id);
    p.push(',');
    p
}

/// `<HH>-<NNN>.jsonl` parsed: (hour, index).
fn parse_name(name: &str) -> Option<(u32, u32)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (h, n) = stem.split_once('-')?;
    Some((h.parse().ok()?, n.parse().ok()?))
}

impl Segments {
    /// Segments under `dir/segments`, rolled past `max_bytes`.
    pub fn new(dir: &Path, max_bytes: u64) -> Segments {
        Segments {
            root: dir.join(DIR),
            max_bytes: max_bytes.max(1),
            current: None,
        }
    }

    /// The segment to write to at `now`: the open one while the hour is the
    /// same, else a new one after the last of the hour's.
    fn current(&mut self, now: DateTime<Utc>) -> io::Result<&mut Current> {
        let day = format!("{:04}-{:02}-{:02}", now.year(), now.month(), now.day());
        let hour = now.hour();
        let same = self
            .current
            .as_ref()
            .is_some_and(|c| c.day == day && c.hour == hour);
        if !same {
            self.current = None;
            return self.open(day, hour, None);
        }
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no open segment"))
    }

    /// Opens a new segment for `day`/`hour`: numbered after the last one in
    /// its directory (or `at_least`), never appending to an older file (a
    /// crash may have left it with a cut line).
    fn open(&mut self, day: String, hour: u32, at_least: Option<u32>) -> io::Result<&mut Current> {
        super::private::dir(&self.root)?;
        let dir = self.root.join(&day);
        super::private::dir(&dir)?;
        let mut index = at_least.unwrap_or(0);
        for e in std::fs::read_dir(&dir)?.flatten() {
            if let Some((h, n)) = parse_name(&e.file_name().to_string_lossy())
                && h == hour
            {
                index = index.max(n + 1);
            }
        }
        let path = dir.join(format!("{hour:02}-{index:03}.{EXT}"));
        let file = super::private::create_file(&path)?;
        Ok(self.current.insert(Current {
            day,
            hour,
            index,
            file,
            len: 0,
        }))
    }

    /// Appends `lines` (each ending in `\n`) at `now`: as few writes as the
    /// rolling allows (one, mostly). Returns for each line whether it was
    /// written (a failed write is cut back; the lines after it in the batch
    /// fail too, and the next batch starts a new segment).
    pub fn append(&mut self, now: DateTime<Utc>, lines: &[String]) -> Vec<Result<(), String>> {
        let mut out: Vec<Result<(), String>> = Vec::with_capacity(lines.len());
        let mut buf = String::new();
        let mut i = 0;
        while i < lines.len() {
            let max = self.max_bytes;
            let c = match self.current(now) {
                Ok(c) => c,
                Err(e) => {
                    let e = format!("log segment in {}: {e}", self.root.display());
                    out.extend(lines[i..].iter().map(|_| Err(e.clone())));
                    return out;
                }
            };
            buf.clear();
            let mut j = i;
            while j < lines.len() {
                let next = (c.len as usize + buf.len() + lines[j].len()) as u64;
                // A line alone in a segment is written however long.
                if next > max && (c.len > 0 || !buf.is_empty()) {
                    break;
                }
                buf.push_str(&lines[j]);
                j += 1;
            }
            if j == i {
                // This one is full: the next.
                let index = c.index;
                let day = c.day.clone();
                let hour = c.hour;
                self.current = None;
                if let Err(e) = self.open(day, hour, Some(index + 1)) {
                    let e = format!("log segment in {}: {e}", self.root.display());
                    out.extend(lines[i..].iter().map(|_| Err(e.clone())));
                    return out;
                }
                continue;
            }
            match c.file.write_all(buf.as_bytes()) {
                Ok(()) => {
                    c.len += buf.len() as u64;
                    out.extend((i..j).map(|_| Ok(())));
                    i = j;
                }
                Err(e) => {
                    // Whole lines only: what was written of the batch goes.
                    let _ = c.file.set_len(c.len);
                    self.current = None;
                    let e = format!("log segment in {}: {e}", self.root.display());
                    out.extend(lines[i..].iter().map(|_| Err(e.clone())));
                    return out;
                }
            }
        }
        out
    }
}

/// Every segment file under `dir/segments`, newest first (by day, hour and
/// number, read from the names).
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let root = dir.join(DIR);
    let mut days: Vec<(String, PathBuf)> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    days.sort();
    let mut out = Vec::new();
    for (_, day) in days.into_iter().rev() {
        let mut files: Vec<((u32, u32), PathBuf)> = std::fs::read_dir(&day)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        parse_name(&e.file_name().to_string_lossy()).map(|k| (k, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        out.extend(files.into_iter().rev().map(|(_, p)| p));
    }
    out
}

/// The per-request text of record `id` in the segment at `path`, when it is
/// there.
pub fn find_in(path: &Path, id: &str) -> io::Result<Option<String>> {
    let prefix = prefix(id);
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    for line in f.lines() {
        let line = line?;
        if line.starts_with(&prefix) {
            return line_to_text(&line)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    Ok(None)
}

/// The only record in the segment at `path`, if it holds exactly one.
pub fn only_record(path: &Path) -> io::Result<Result<String, usize>> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut found = None;
    let mut n = 0;
    for line in f.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        n += 1;
        if n == 1 {
            found = Some(line);
        }
    }
    match (n, found) {
        (1, Some(line)) => line_to_text(&line)
            .map(Ok)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        _ => Ok(Err(n)),
    }
}

/// How much of the segments a search by id reads at most, newest first.
pub const FIND_MAX_FILES: usize = 256;

/// Record `id` in the segments under `dir`, newest first, reading at most
/// [`FIND_MAX_FILES`] segments: its segment and per-request text.
pub fn find(dir: &Path, id: &str) -> io::Result<Option<(PathBuf, String)>> {
    for path in list(dir).into_iter().take(FIND_MAX_FILES) {
        if let Some(text) = find_in(&path, id)? {
            return Ok(Some((path, text)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, size: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let text = format!(
                    "{{\"event\":\"request\",\"id\":\"r{i}\",\"pad\":\"{}\"}}\n{{\"event\":\"outcome\",\"outcome\":\"ok\"}}\n",
                    "x".repeat(size)
                );
                line(&format!("r{i}"), &Utc::now(), &text)
            })
            .collect()
    }

    #[test]
    fn a_line_reads_back_as_the_per_request_text() {
        let text = "{\"event\":\"request\",\"id\":\"a\\\"b\"}\n{\"event\":\"outcome\"}\n";
        let l = line("a\"b", &Utc::now(), text);
        assert_eq!(l.matches('\n').count(), 1);
        assert!(l.starts_with(&prefix("a\"b")));
        assert_eq!(line_to_text(&l).unwrap(), text);
    }

    #[cfg(unix)]
    #[test]
    fn batches_roll_by_size_and_hour_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let t = tempfile::tempdir().unwrap();
        let batch = lines(10, 100);
        let one = batch[0].len() as u64;
        let mut s = Segments::new(t.path(), one * 4 + 1);
        let now: DateTime<Utc> = "2026-12-07T05:10:00Z".parse().unwrap();
        assert!(s.append(now, &batch).iter().all(Result::is_ok));
        // 4 + 4 + 2 lines; then the next hour starts its own.
        let later: DateTime<Utc> = "2026-12-07T06:00:00Z".parse().unwrap();
        assert!(s.append(later, &batch[..1]).iter().all(Result::is_ok));
        let files = list(t.path());
        let names: Vec<String> = files
            .iter()
            .map(|p| {
                p.strip_prefix(t.path().join(DIR))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "2026-12-07/06-000.jsonl",
                "2026-12-07/05-002.jsonl",
                "2026-12-07/05-001.jsonl",
                "2026-12-07/05-000.jsonl"
            ]
        );
        let sizes: Vec<usize> = files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
            .collect();
        assert_eq!(sizes, [1, 2, 4, 4]);
        for p in &files {
            assert_eq!(mode(p), 0o600);
        }
        assert_eq!(mode(&t.path().join(DIR)), 0o700);
        assert_eq!(mode(&t.path().join(DIR).join("2026-12-07")), 0o700);
        // Found by id, newest first; the one-record segment read alone.
        let (path, text) = find(t.path(), "r7").unwrap().unwrap();
        assert!(path.ends_with("05-001.jsonl"));
        assert!(text.starts_with("{\"event\":\"request\",\"id\":\"r7\""));
        assert!(find(t.path(), "r77").unwrap().is_none());
        assert!(only_record(&files[0]).unwrap().is_ok());
        assert_eq!(only_record(&files[1]).unwrap().unwrap_err(), 2);
        // A writer started again never appends to an existing file.
        let mut again = Segments::new(t.path(), 1 << 20);
        assert!(again.append(later, &batch[..1]).iter().all(Result::is_ok));
        assert!(t.path().join(DIR).join("2026-12-07/06-001.jsonl").exists());
    }
}
