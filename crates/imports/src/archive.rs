//! ZIP files (Braze's "CSV Export User Data" arrives zipped): the first CSV entry, read as a
//! stream. The zip crate's stream reader borrows its source, so a thread of its own reads the
//! archive and hands the entry's bytes over a small bounded channel; the decoder reads them
//! like any other file, and memory stays at a few chunks.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the archive's thread and the decoder.
const IN_FLIGHT: usize = 4;

/// The bytes of the archive's first `.csv` entry (directories and other files are skipped).
pub fn first_csv_entry(archive: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
    let (tx, rx) = sync_channel(IN_FLIGHT);
    std::thread::spawn(move || {
        if let Err(e) = send_first_csv(archive, &tx) {
            let _ = tx.send(Err(e));
        }
    });
    Box::new(ChannelReader {
        rx,
        chunk: Vec::new(),
        at: 0,
    })
}

fn send_first_csv(
    mut archive: Box<dyn Read + Send>,
    tx: &SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<()> {
    loop {
        let entry = zip::read::read_zipfile_from_stream(&mut archive)
            .map_err(|e| io::Error::other(format!("not a readable ZIP archive: {e}")))?;
        let Some(mut entry) = entry else {
            return Err(io::Error::other("the ZIP archive holds no .csv file"));
        };
        let is_csv = entry
            .name()
            .is_ok_and(|n| n.to_ascii_lowercase().ends_with(".csv"));
        if entry.is_dir() || !is_csv {
            io::copy(&mut entry, &mut io::sink())?;
            continue;
        }
        let mut buf = vec![0; CHUNK];
        loop {
            let n = entry.read(&mut buf)?;
            // A closed channel: the decoder stopped reading; so does this thread.
            if n == 0 || tx.send(Ok(buf[..n].to_vec())).is_err() {
                return Ok(());
            }
        }
    }
}

struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread is done: the end of the entry.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zipped(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, text) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(text.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn read_all(bytes: Vec<u8>) -> io::Result<String> {
        let mut out = String::new();
        first_csv_entry(Box::new(io::Cursor::new(bytes))).read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn the_first_csv_entry_is_read_whole() {
        let big = format!("id\n{}", "1234567890\n".repeat(20_000));
        let archive = zipped(&[
            ("README.txt", "skip me"),
            ("users.csv", &big),
            ("b.csv", "x"),
        ]);
        assert_eq!(read_all(archive).unwrap(), big);
    }

    #[test]
    fn archives_without_csv_and_non_archives_are_errors() {
        let e = read_all(zipped(&[("a.txt", "x")])).unwrap_err();
        assert!(e.to_string().contains("no .csv"), "{e}");
        assert!(read_all(b"id\n1\n".to_vec()).is_err());
    }
}
