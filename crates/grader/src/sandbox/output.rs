//! The bounded record of what a server prints: its output is read continuously (a server is
//! never blocked by a full pipe, however much it prints) and only the first and the last
//! bytes are kept, so both a banner and a final traceback survive.

use std::io::Read;
use std::sync::{Arc, Mutex};

/// The first and last bytes of a stream, at most `cap` in all.
#[derive(Debug, Clone)]
pub struct Tail {
    cap: usize,
    head: Vec<u8>,
    tail: Vec<u8>,
    dropped: u64,
}

impl Tail {
    /// An empty record keeping at most `cap` bytes (at least 256).
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(256),
            head: Vec::new(),
            tail: Vec::new(),
            dropped: 0,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        let head_cap = self.cap / 2;
        if self.head.len() < head_cap {
            let take = data.len().min(head_cap - self.head.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        let tail_cap = self.cap - head_cap;
        self.tail.extend_from_slice(data);
        if self.tail.len() > tail_cap {
            let cut = self.tail.len() - tail_cap;
            self.dropped += cut as u64;
            self.tail.drain(..cut);
        }
    }

    /// The kept bytes as text (invalid UTF-8 replaced), with a line saying how much was
    /// dropped between the head and the tail.
    pub fn text(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        let tail = String::from_utf8_lossy(&self.tail);
        if self.dropped > 0 {
            format!(
                "{head}\n[poolgrade: {} bytes of output dropped]\n{tail}",
                self.dropped
            )
        } else {
            format!("{head}{tail}")
        }
    }
}

/// A [`Tail`] shared between the thread that fills it and whoever reads it.
pub type SharedTail = Arc<Mutex<Tail>>;

/// Reads `stream` to its end on a thread of its own, into a new shared [`Tail`] of `cap`
/// bytes. Large reads: a server printing megabytes costs few wake-ups.
pub fn capture(mut stream: impl Read + Send + 'static, cap: usize) -> SharedTail {
    let tail = Arc::new(Mutex::new(Tail::new(cap)));
    let filled = Arc::clone(&tail);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Ok(mut t) = filled.lock() {
                        t.push(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    tail
}

/// The text of a shared tail (empty if its lock was poisoned).
pub fn text_of(tail: &SharedTail) -> String {
    tail.lock().map(|t| t.text()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_the_tail() {
        let mut t = Tail::new(256);
        t.push(b"BANNER\n");
        t.push(&[b'a'; 1000]);
        t.push(b"END");
        let text = t.text();
        assert!(text.starts_with("BANNER\n"), "{text}");
        assert!(text.ends_with("aEND"), "{text}");
        assert!(text.contains("bytes of output dropped"), "{text}");
        assert!(text.len() < 256 + 64);
    }

    #[test]
    fn short_output_is_kept_whole() {
        let mut t = Tail::new(1024);
        t.push(b"one\n");
        t.push(b"two\n");
        assert_eq!(t.text(), "one\ntwo\n");
    }
}
