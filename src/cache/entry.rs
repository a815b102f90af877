//! A cached answer: what the client received (status, content type, and
//! the body or a stream's chunks), and its compact binary form for Redis.
//!
//! The form: `YC1`, a kind byte (`j` body, `s` stream), the status (u16
//! big-endian), the content type and then each part, each as a u32
//! big-endian length and its bytes. Anything else decodes to `None` (a
//! miss), never an error the client sees.

use bytes::{Buf, Bytes};

const MAGIC: &[u8] = b"YC1";

/// A whole answer or a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Body(Bytes),
    /// The chunks as the client got them, in order.
    Stream(Vec<Bytes>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub status: u16,
    pub content_type: Option<Bytes>,
    pub stored: Stored,
}

impl Entry {
    /// Bytes of payload (for the size limit).
    pub fn size(&self) -> usize {
        let parts = match &self.stored {
            Stored::Body(b) => b.len(),
            Stored::Stream(chunks) => chunks.iter().map(Bytes::len).sum(),
        };
        parts + self.content_type.as_ref().map_or(0, Bytes::len)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 32);
        out.extend_from_slice(MAGIC);
        let parts: &[Bytes] = match &self.stored {
            Stored::Body(b) => {
                out.push(b'j');
                std::slice::from_ref(b)
            }
            Stored::Stream(chunks) => {
                out.push(b's');
                chunks
            }
        };
        out.extend_from_slice(&self.status.to_be_bytes());
        put(&mut out, self.content_type.as_deref().unwrap_or_default());
        for p in parts {
            put(&mut out, p);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut b = Bytes::copy_from_slice(bytes.strip_prefix(MAGIC)?);
        if b.remaining() < 3 {
            return None;
        }
        let kind = b.get_u8();
        let status = b.get_u16();
        let content_type = take(&mut b)?;
        let mut parts = Vec::new();
        while b.has_remaining() {
            parts.push(take(&mut b)?);
        }
        let stored = match kind {
            b'j' if parts.len() == 1 => Stored::Body(parts.pop()?),
            b's' => Stored::Stream(parts),
            _ => return None,
        };
        Some(Entry {
            status,
            content_type: (!content_type.is_empty()).then_some(content_type),
            stored,
        })
    }
}

fn put(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(part);
}

fn take(b: &mut Bytes) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_u32() as usize;
    (b.remaining() >= n).then(|| b.split_to(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for e in [
            Entry {
                status: 200,
                content_type: Some(Bytes::from_static(b"application/json")),
                stored: Stored::Body(Bytes::from_static(b"{\"a\":1}")),
            },
            Entry {
                status: 201,
                content_type: None,
                stored: Stored::Body(Bytes::new()),
            },
            Entry {
                status: 200,
                content_type: Some(Bytes::from_static(b"text/event-stream")),
                stored: Stored::Stream(vec![
                    Bytes::from_static(b"data: 1\n\n"),
                    Bytes::new(),
                    Bytes::from_static(b"data: [DONE]\n\n"),
                ]),
            },
        ] {
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(Entry::decode(b""), None);
        assert_eq!(Entry::decode(b"YC1"), None);
        assert_eq!(Entry::decode(b"YC1j\x00\xc8\x00\x00\x00\x05ab"), None);
        assert_eq!(Entry::decode(b"something else"), None);
        let mut e = Entry {
            status: 200,
            content_type: None,
            stored: Stored::Body(Bytes::from_static(b"x")),
        }
        .encode();
        e[3] = b'q';
        assert_eq!(Entry::decode(&e), None);
    }
}
