//! `ADD`'s local archives: a tar, plain or compressed with gzip, zstd, bzip2 or xz, is
//! unpacked; anything else (a compressed file that is not a tar, a plain file) is copied.
//!
//! gzip and zstd go through the image crate's layer reader; bzip2 through the `bzip2` crate
//! on its pure-Rust backend (`libbz2-rs-sys`), xz through `lzma-rs` (pure Rust, a decoder
//! that writes, so it runs on a thread of its own feeding a pipe). No C library is needed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// How a file is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

fn sniff(head: &[u8]) -> Kind {
    if head.starts_with(&[0x1f, 0x8b]) {
        Kind::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Kind::Zstd
    } else if head.starts_with(b"BZh") {
        Kind::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Kind::Xz
    } else {
        Kind::Plain
    }
}

fn is_tar(block: &[u8]) -> bool {
    block.len() >= 262 && &block[257..262] == b"ustar"
}

/// The decompressed stream of `path` if it is a tar archive (plain or compressed), `None`
/// if it is not one.
pub fn open_tar(path: &Path) -> Result<Option<Box<dyn Read + Send>>> {
    let file = File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let mut buf = BufReader::with_capacity(1 << 16, file);
    let head = buf.fill_buf().map_err(|e| Error::io(path, "read", e))?;
    let kind = sniff(head);
    let stream: Box<dyn Read + Send> = match kind {
        Kind::Plain => Box::new(buf),
        Kind::Gzip | Kind::Zstd => berth_image::open_layer(path, None)?,
        Kind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(buf)),
        Kind::Xz => xz_reader(buf),
    };
    // The first 512 bytes decide: a tar header has `ustar` at 257.
    let mut stream = BufReader::with_capacity(1 << 16, stream);
    let mut first = Vec::with_capacity(512);
    while first.len() < 512 {
        let chunk = match stream.fill_buf() {
            Ok(c) => c,
            // Not decompressible after all: not an archive, copied as is.
            Err(_) if kind != Kind::Plain => return Ok(None),
            Err(e) => return Err(Error::io(path, "read", e)),
        };
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len().min(512 - first.len());
        first.extend_from_slice(&chunk[..n]);
        stream.consume(n);
    }
    if !is_tar(&first) {
        return Ok(None);
    }
    Ok(Some(Box::new(io::Cursor::new(first).chain(stream))))
}

/// Unpacks a tar stream beneath `dir` with the layer extractor: flattened, every entry
/// confined beneath `dir`, bounded by the store's limits (`BERTH_MAX_LAYER_BYTES` and the
/// rest). For `ADD`'s archives and the build contexts of `berth build -` and berthd.
pub fn unpack(stream: Box<dyn Read + Send>, dir: &Path, rootless: bool) -> berth_image::Result<()> {
    let opts = berth_image::ExtractOptions {
        mode: berth_image::Mode::Flatten,
        id_map: None,
        rootless,
        confine: false,
        sync: false,
        limits: berth_image::Limits::from_env()?,
        budget: None,
    };
    berth_image::extract_layer(stream, dir, &opts)?;
    Ok(())
}

/// An xz decoder as a reader: `lzma-rs` decodes into a writer, here a pipe fed on a thread.
fn xz_reader(mut input: BufReader<File>) -> Box<dyn Read + Send> {
    let (reader, mut writer) = match io::pipe() {
        Ok(p) => p,
        Err(e) => return Box::new(FailedRead(Some(e))),
    };
    std::thread::spawn(move || {
        // A reader that stops early closes the pipe: the decoder ends with EPIPE.
        let _ = lzma_rs::xz_decompress(&mut input, &mut writer);
    });
    Box::new(reader)
}

struct FailedRead(Option<io::Error>);

impl Read for FailedRead {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::ErrorKind::BrokenPipe.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn tar_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        let mut h = [0u8; 512];
        h[..5].copy_from_slice(b"a.txt");
        h[257..262].copy_from_slice(b"ustar");
        b.extend_from_slice(&h);
        b.resize(2048, 0);
        b
    }

    #[test]
    fn every_compression_is_recognised_and_non_tars_are_not_archives() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_bytes();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &tar[..], &mut xz).unwrap();
        let mut plain_bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        plain_bz.write_all(b"just text, no tar").unwrap();
        for (name, data, want) in [
            ("t.tar", tar.clone(), true),
            ("t.tar.bz2", bz.finish().unwrap(), true),
            ("t.tar.xz", xz, true),
            ("t.txt.bz2", plain_bz.finish().unwrap(), false),
            ("t.txt", b"hello".to_vec(), false),
            ("fake.bz2", b"BZh9 but broken".to_vec(), false),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            let got = open_tar(&p).unwrap();
            assert_eq!(got.is_some(), want, "{name}");
            if let Some(mut r) = got {
                let mut all = Vec::new();
                r.read_to_end(&mut all).unwrap();
                assert_eq!(all, tar, "{name}");
            }
        }
    }
}
