//! Docker's multiplexed attach stream: every chunk of output is one frame, an 8-byte header
//! `[stream, 0, 0, 0, len as u32 big-endian]` followed by `len` bytes of payload. Stream 1 is
//! stdout, 2 stderr (with a terminal, everything is stream 1); 0 (stdin) is accepted when
//! decoding, as docker's own decoder does.
//!
//! The monitor writes frames of at most [`MAX_PAYLOAD`] bytes; [`Demuxer`] reads a byte
//! stream back into frames with a caller-chosen bound, so a hostile length cannot make a
//! reader allocate 4 GiB.

use crate::error::{Error, Result};

/// Length of a frame header.
pub const HEADER_LEN: usize = 8;

/// The largest payload the monitor puts in one frame (its read size).
pub const MAX_PAYLOAD: usize = 32 * 1024;

/// Which stream a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Stream {
    /// Standard input (only ever decoded).
    Stdin = 0,
    /// Standard output, or everything of a terminal.
    Stdout = 1,
    /// Standard error.
    Stderr = 2,
}

impl TryFrom<u8> for Stream {
    type Error = Error;

    fn try_from(b: u8) -> Result<Stream> {
        match b {
            0 => Ok(Stream::Stdin),
            1 => Ok(Stream::Stdout),
            2 => Ok(Stream::Stderr),
            other => Err(Error::FrameStream(other)),
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The stream of the payload.
    pub stream: Stream,
    /// The payload's length in bytes.
    pub len: u32,
}

impl FrameHeader {
    /// The header's 8 bytes.
    pub fn encode(self) -> [u8; HEADER_LEN] {
        let len = self.len.to_be_bytes();
        [self.stream as u8, 0, 0, 0, len[0], len[1], len[2], len[3]]
    }

    /// Parses a header; the stream must be 0, 1 or 2 and the padding zero. The length is not
    /// bounded here: see [`FrameHeader::check_len`].
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<FrameHeader> {
        let stream = Stream::try_from(bytes[0])?;
        if bytes[1..4] != [0, 0, 0] {
            return Err(Error::FramePadding);
        }
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        Ok(FrameHeader { stream, len })
    }

    /// The payload length as a `usize`, refused when above `max`.
    pub fn check_len(self, max: usize) -> Result<usize> {
        match usize::try_from(self.len) {
            Ok(len) if len <= max => Ok(len),
            _ => Err(Error::FrameTooLong { len: self.len, max }),
        }
    }
}

/// Appends `payload` to `out` as frames of `stream`, each at most [`MAX_PAYLOAD`] bytes (none
/// for an empty payload).
pub fn encode_frames(stream: Stream, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + HEADER_LEN * payload.len().div_ceil(MAX_PAYLOAD));
    for chunk in payload.chunks(MAX_PAYLOAD) {
        let header = FrameHeader {
            stream,
            len: chunk.len() as u32,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(chunk);
    }
}

/// Splits a multiplexed byte stream, fed in pieces of any size, back into frames.
#[derive(Debug)]
pub struct Demuxer {
    buf: Vec<u8>,
    start: usize,
    max_payload: usize,
}

impl Demuxer {
    /// A demuxer refusing frames longer than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Demuxer {
        Demuxer {
            buf: Vec::new(),
            start: 0,
            max_payload,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `None` until one has fully arrived. After an error the
    /// stream cannot be resynchronised: the caller should drop the connection.
    pub fn next_frame(&mut self) -> Result<Option<(Stream, Vec<u8>)>> {
        let pending = &self.buf[self.start..];
        let Some(header) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = FrameHeader::decode(header)?;
        let len = header.check_len(self.max_payload)?;
        let Some(payload) = pending.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.start += HEADER_LEN + len;
        Ok(Some((header.stream, payload)))
    }

    /// Bytes received that do not yet form a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        for (stream, len) in [
            (Stream::Stdout, 0),
            (Stream::Stderr, 5),
            (Stream::Stdin, u32::MAX),
        ] {
            let h = FrameHeader { stream, len };
            let bytes = h.encode();
            assert_eq!(bytes[0], stream as u8);
            assert_eq!(&bytes[1..4], &[0, 0, 0]);
            assert_eq!(FrameHeader::decode(&bytes).unwrap(), h);
        }
        assert_eq!(
            FrameHeader {
                stream: Stream::Stderr,
                len: 0x0102_0304
            }
            .encode(),
            [2, 0, 0, 0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn hostile_headers() {
        assert!(matches!(
            FrameHeader::decode(&[3, 0, 0, 0, 0, 0, 0, 1]),
            Err(Error::FrameStream(3))
        ));
        assert!(matches!(
            FrameHeader::decode(&[0xff, 0, 0, 0, 0, 0, 0, 1]),
            Err(Error::FrameStream(0xff))
        ));
        assert!(matches!(
            FrameHeader::decode(&[1, 0, 1, 0, 0, 0, 0, 1]),
            Err(Error::FramePadding)
        ));
        let huge = FrameHeader::decode(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(huge.len, u32::MAX);
        assert!(matches!(
            huge.check_len(MAX_PAYLOAD),
            Err(Error::FrameTooLong { len: u32::MAX, .. })
        ));
        let exact = FrameHeader {
            stream: Stream::Stdout,
            len: MAX_PAYLOAD as u32,
        };
        assert_eq!(exact.check_len(MAX_PAYLOAD).unwrap(), MAX_PAYLOAD);
        let one_more = FrameHeader {
            len: MAX_PAYLOAD as u32 + 1,
            ..exact
        };
        assert!(one_more.check_len(MAX_PAYLOAD).is_err());
    }

    #[test]
    fn encode_splits_long_payloads() {
        let mut out = Vec::new();
        encode_frames(Stream::Stderr, &[], &mut out);
        assert!(out.is_empty());
        let payload: Vec<u8> = (0..MAX_PAYLOAD * 2 + 10).map(|i| i as u8).collect();
        encode_frames(Stream::Stderr, &payload, &mut out);
        assert_eq!(out.len(), payload.len() + 3 * HEADER_LEN);
        let mut d = Demuxer::new(MAX_PAYLOAD);
        d.push(&out);
        let mut back = Vec::new();
        let mut lens = Vec::new();
        while let Some((s, p)) = d.next_frame().unwrap() {
            assert_eq!(s, Stream::Stderr);
            lens.push(p.len());
            back.extend(p);
        }
        assert_eq!(lens, [MAX_PAYLOAD, MAX_PAYLOAD, 10]);
        assert_eq!(back, payload);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn demuxer_byte_by_byte() {
        let mut stream = Vec::new();
        encode_frames(Stream::Stdout, b"hello\n", &mut stream);
        encode_frames(Stream::Stderr, b"oops\n", &mut stream);
        stream.extend_from_slice(
            &FrameHeader {
                stream: Stream::Stdout,
                len: 0,
            }
            .encode(),
        );
        let mut d = Demuxer::new(16);
        let mut frames = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(
            frames,
            [
                (Stream::Stdout, b"hello\n".to_vec()),
                (Stream::Stderr, b"oops\n".to_vec()),
                (Stream::Stdout, Vec::new()),
            ]
        );
    }

    #[test]
    fn demuxer_refuses_hostile_lengths_before_buffering() {
        let mut d = Demuxer::new(1024);
        d.push(&[1, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.next_frame(),
            Err(Error::FrameTooLong {
                len: 0x7fff_ffff,
                max: 1024
            })
        ));
        let mut d = Demuxer::new(1024);
        d.push(&[9, 0, 0, 0, 0, 0, 0, 1, b'x']);
        assert!(matches!(d.next_frame(), Err(Error::FrameStream(9))));
        // A truncated header or payload is not an error, just not yet a frame.
        let mut d = Demuxer::new(1024);
        d.push(&[1, 0, 0, 0, 0, 0]);
        assert!(d.next_frame().unwrap().is_none());
        d.push(&[0, 3, b'a', b'b']);
        assert!(d.next_frame().unwrap().is_none());
        assert_eq!(d.pending(), 10);
        d.push(b"c");
        assert_eq!(
            d.next_frame().unwrap(),
            Some((Stream::Stdout, b"abc".to_vec()))
        );
    }
}
