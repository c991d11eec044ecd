//! A streaming tar reader built for hostile input and speed.
//!
//! It understands ustar, GNU (long names `L`/`K`, old sparse `S`, base-256 numbers) and POSIX
//! PAX (`x`/`g` records: path, linkpath, size, uid, gid, mtime, atime, `SCHILY.xattr.*`,
//! `SCHILY.devmajor/devminor`, and the GNU PAX sparse formats 0.0, 0.1 and 1.0). It never
//! allocates more than [`MAX_META`] bytes for one metadata record, never keeps more than
//! [`Limits::max_entry_meta`] of extension headers for one entry or reads more than
//! [`Limits::max_layer_meta`] of metadata in one layer, and never trusts a size it has not
//! bounded. Data is handed out as borrowed slices of the source's buffers, so file contents
//! are copied exactly once: from the decompressor's buffer into the kernel.

use std::io::{self, Read};

use super::Limits;
use crate::error::{Error, Result};

/// The largest PAX header, GNU long name or sparse map accepted (1 MiB).
pub(crate) const MAX_META: u64 = 1 << 20;
/// The most sparse segments one entry may have.
const MAX_SPARSE: usize = 1 << 16;
/// Linux's bound on the names of one file's extended attributes (`XATTR_LIST_MAX`, each
/// name with its NUL): more cannot be stored, so an entry with more is refused.
const XATTR_LIST_MAX: usize = 1 << 16;

const BLOCK: usize = 512;

/// A buffered byte source: the tar reader pulls slices from it and says how much it used.
pub(crate) trait Source {
    /// Bytes available now; empty only at the end of the stream.
    fn fill(&mut self) -> io::Result<&[u8]>;
    /// Marks `n` bytes of the last [`Source::fill`] as used.
    fn consume(&mut self, n: usize);
    /// The shared buffer the last [`Source::fill`] returned a slice of, if the source hands
    /// out shared buffers (then a slice may be kept beyond the next fill without a copy).
    fn shared(&self) -> Option<&std::sync::Arc<super::Chunk>> {
        None
    }
}

/// A [`Source`] over any reader, with one large buffer (for single-threaded use).
pub(crate) struct ReadSource<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl<R: Read> ReadSource<R> {
    pub(crate) fn new(inner: R, capacity: usize) -> Self {
        ReadSource {
            inner,
            buf: vec![0; capacity.max(BLOCK)],
            pos: 0,
            len: 0,
        }
    }
}

impl<R> ReadSource<R> {
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Source for ReadSource<R> {
    fn fill(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
        }
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

/// A timestamp: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// One archive member's metadata. Its data (if any) is read with [`TarReader::data`].
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The member's name as stored (PAX/GNU long names applied).
    pub path: Vec<u8>,
    /// Symlink target or hardlink target.
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// The file's size once extracted (differs from `size` for sparse files).
    pub real_size: u64,
    /// For sparse files: (offset, length) of each stored data segment, in order.
    pub sparse: Option<Vec<(u64, u64)>>,
    pub mtime: Time,
    pub atime: Option<Time>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes (`SCHILY.xattr.NAME`), in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Offset of the member's first header in the stream.
    pub offset: u64,
}

impl Entry {
    /// The name for error messages.
    pub(crate) fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// PAX values that override header fields.
#[derive(Default, Clone)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Time>,
    atime: Option<Time>,
    devmajor: Option<u32>,
    devminor: Option<u32>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse_major: Option<u64>,
    sparse_minor: Option<u64>,
    sparse_name: Option<Vec<u8>>,
    sparse_realsize: Option<u64>,
    sparse_map: Option<Vec<u64>>,
    /// GNU sparse 0.0: repeated offset/numbytes records.
    sparse_pairs: Vec<u64>,
}

/// The streaming reader.
pub(crate) struct TarReader<S> {
    src: S,
    /// Bytes consumed from the stream so far.
    pos: u64,
    /// Data bytes of the current member not yet consumed.
    remaining: u64,
    /// Padding after the current member's data.
    pad: u64,
    globals: Pax,
    done: bool,
    limits: Limits,
    /// Bytes of global PAX headers so far (they apply to every later entry).
    globals_meta: u64,
    /// Metadata bytes of the layer so far (extension headers, names and link targets).
    layer_meta: u64,
}

fn tar_err(offset: u64, reason: impl Into<String>) -> Error {
    Error::Tar {
        offset,
        reason: reason.into(),
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Parses a numeric header field: octal ASCII or GNU base-256.
fn parse_num(field: &[u8]) -> Option<u64> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            if first == 0xff {
                return None; // negative
            }
            let mut v: u64 = u64::from(first & 0x7f);
            for &b in &field[1..] {
                v = v.checked_mul(256)?.checked_add(u64::from(b))?;
            }
            return Some(v);
        }
    }
    let mut v: u64 = 0;
    let mut seen_digit = false;
    for &b in field {
        match b {
            b'0'..=b'7' => {
                v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
                seen_digit = true;
            }
            b' ' | 0 if !seen_digit => {}
            b' ' | 0 => break,
            _ => return None,
        }
    }
    Some(v)
}

/// A NUL-terminated string field.
fn cstr(field: &[u8]) -> &[u8] {
    match memchr(0, field) {
        Some(n) => &field[..n],
        None => field,
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// A PAX time: `[-]SECONDS[.FRACTION]`.
fn parse_pax_time(v: &[u8]) -> Option<Time> {
    let (neg, v) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (int, frac) = match memchr(b'.', v) {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    let sec = i64::try_from(parse_decimal(int)?).ok()?;
    let mut nsec: u32 = 0;
    let mut scale = 100_000_000;
    for &b in frac.iter().take(9) {
        if !b.is_ascii_digit() {
            return None;
        }
        nsec += u32::from(b - b'0') * scale;
        scale /= 10;
    }
    if frac.iter().any(|b| !b.is_ascii_digit()) {
        return None;
    }
    if neg {
        // -1.5 means 1.5 seconds before the epoch.
        if nsec == 0 {
            Some(Time { sec: -sec, nsec: 0 })
        } else {
            Some(Time {
                sec: -sec - 1,
                nsec: 1_000_000_000 - nsec,
            })
        }
    } else {
        Some(Time { sec, nsec })
    }
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    parse_decimal(v).and_then(|n| u32::try_from(n).ok())
}

/// Applies PAX records from `data` to `pax`.
fn parse_pax(data: &[u8], pax: &mut Pax, offset: u64) -> Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        // Trailing NUL padding after the last record is tolerated.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = memchr(b' ', rest).ok_or_else(|| tar_err(offset, "PAX record without length"))?;
        let len = parse_decimal(&rest[..sp])
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > sp + 1 && n <= rest.len())
            .ok_or_else(|| tar_err(offset, "PAX record with a bad length"))?;
        let record = &rest[sp + 1..len];
        rest = &rest[len..];
        let record = record
            .strip_suffix(b"\n")
            .ok_or_else(|| tar_err(offset, "PAX record not ended by a newline"))?;
        let eq = memchr(b'=', record).ok_or_else(|| tar_err(offset, "PAX record without '='"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let bad = |k: &[u8]| {
            tar_err(
                offset,
                format!(
                    "PAX record {:?} has a bad value",
                    String::from_utf8_lossy(k)
                ),
            )
        };
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(parse_decimal(value).ok_or_else(|| bad(key))?),
            b"uid" => pax.uid = Some(parse_decimal(value).ok_or_else(|| bad(key))?),
            b"gid" => pax.gid = Some(parse_decimal(value).ok_or_else(|| bad(key))?),
            b"mtime" => pax.mtime = Some(parse_pax_time(value).ok_or_else(|| bad(key))?),
            b"atime" => pax.atime = Some(parse_pax_time(value).ok_or_else(|| bad(key))?),
            b"SCHILY.devmajor" => pax.devmajor = Some(parse_u32(value).ok_or_else(|| bad(key))?),
            b"SCHILY.devminor" => pax.devminor = Some(parse_u32(value).ok_or_else(|| bad(key))?),
            b"GNU.sparse.major" => {
                pax.sparse_major = Some(parse_decimal(value).ok_or_else(|| bad(key))?);
            }
            b"GNU.sparse.minor" => {
                pax.sparse_minor = Some(parse_decimal(value).ok_or_else(|| bad(key))?);
            }
            b"GNU.sparse.name" => pax.sparse_name = Some(value.to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                pax.sparse_realsize = Some(parse_decimal(value).ok_or_else(|| bad(key))?);
            }
            b"GNU.sparse.map" => {
                let mut map = Vec::new();
                if !value.is_empty() {
                    for n in value.split(|&b| b == b',') {
                        map.push(parse_decimal(n).ok_or_else(|| bad(key))?);
                        if map.len() > 2 * MAX_SPARSE {
                            return Err(tar_err(offset, "sparse map too large"));
                        }
                    }
                }
                pax.sparse_map = Some(map);
            }
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                if pax.sparse_pairs.len() > 2 * MAX_SPARSE {
                    return Err(tar_err(offset, "sparse map too large"));
                }
                pax.sparse_pairs
                    .push(parse_decimal(value).ok_or_else(|| bad(key))?);
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    // A name given twice keeps its last value ([`dedup_xattrs`]).
                    pax.xattrs.push((name.to_vec(), value.to_vec()));
                }
                // Other keys (uname, gname, ctime, comment, charset, LIBARCHIVE.*) are ignored.
            }
        }
    }
    Ok(())
}

/// Keeps the last value of each xattr name, in the order of those last occurrences (linear:
/// a hostile entry may repeat names many times).
fn dedup_xattrs(mut v: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    if v.len() < 2 {
        return v;
    }
    let mut keep = vec![false; v.len()];
    {
        let mut seen = std::collections::HashSet::with_capacity(v.len());
        for (i, (name, _)) in v.iter().enumerate().rev() {
            keep[i] = seen.insert(name.as_slice());
        }
    }
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    v
}

fn pairs(flat: &[u64], offset: u64) -> Result<Vec<(u64, u64)>> {
    if !flat.len().is_multiple_of(2) {
        return Err(tar_err(offset, "sparse map with an odd number of values"));
    }
    Ok(flat.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

impl<S: Source> TarReader<S> {
    pub(crate) fn new(src: S, limits: &Limits) -> Self {
        TarReader {
            src,
            pos: 0,
            remaining: 0,
            pad: 0,
            globals: Pax::default(),
            done: false,
            limits: *limits,
            globals_meta: 0,
            layer_meta: 0,
        }
    }

    /// Accounts for `n` bytes of metadata of the entry at `offset` (`entry_meta`: what its
    /// extension headers took so far, global headers included); an error past either limit.
    fn charge_meta(&mut self, n: u64, entry_meta: u64, offset: u64) -> Result<()> {
        self.layer_meta = self.layer_meta.saturating_add(n);
        if entry_meta > self.limits.max_entry_meta {
            return Err(Error::Limit {
                what: format!("tar stream at byte {offset}"),
                detail: format!(
                    "the extension headers (PAX, GNU long names) of one entry exceed {} bytes",
                    self.limits.max_entry_meta
                ),
                limit: "BERTH_MAX_ENTRY_META",
                max: self.limits.max_entry_meta,
            });
        }
        if self.layer_meta > self.limits.max_layer_meta {
            return Err(Error::Limit {
                what: format!("tar stream at byte {offset}"),
                detail: format!(
                    "the layer's metadata (extension headers, names, link targets) exceeds {} \
                     bytes",
                    self.limits.max_layer_meta
                ),
                limit: "BERTH_MAX_LAYER_META",
                max: self.limits.max_layer_meta,
            });
        }
        Ok(())
    }

    /// Gives the underlying source back (to drain it).
    pub(crate) fn into_source(self) -> S {
        self.src
    }

    /// Skips `n` bytes of the stream.
    fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let avail = self.src.fill().map_err(Error::Read)?;
            if avail.is_empty() {
                return Err(tar_err(self.pos, "unexpected end of stream"));
            }
            let take = avail.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            self.src.consume(take);
            self.pos += take as u64;
            n -= take as u64;
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes; returns false on a clean end of stream before any byte.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            let avail = self.src.fill().map_err(Error::Read)?;
            if avail.is_empty() {
                if done == 0 {
                    return Ok(false);
                }
                return Err(tar_err(self.pos, "unexpected end of stream in a header"));
            }
            let take = avail.len().min(buf.len() - done);
            buf[done..done + take].copy_from_slice(&avail[..take]);
            self.src.consume(take);
            self.pos += take as u64;
            done += take;
        }
        Ok(true)
    }

    /// Reads a metadata record of `size` bytes (plus padding) into memory.
    fn read_meta(&mut self, size: u64, offset: u64, what: &str) -> Result<Vec<u8>> {
        if size > MAX_META {
            return Err(tar_err(
                offset,
                format!("{what} of {size} bytes exceeds the {MAX_META}-byte limit"),
            ));
        }
        let mut data = vec![0; size as usize];
        if !self.read_exact(&mut data)? {
            return Err(tar_err(
                self.pos,
                format!("unexpected end of stream in a {what}"),
            ));
        }
        self.skip(padding(size))?;
        Ok(data)
    }

    /// The data of the current member still available in the source's buffer (at most what is
    /// left of the member); empty once the member's data is consumed.
    pub(crate) fn data(&mut self) -> Result<&[u8]> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let remaining = self.remaining;
        let pos = self.pos;
        let avail = self.src.fill().map_err(Error::Read)?;
        if avail.is_empty() {
            return Err(tar_err(pos, "unexpected end of stream in a member's data"));
        }
        let n = avail
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        Ok(&avail[..n])
    }

    /// Marks `n` bytes returned by [`TarReader::data`] as used.
    pub(crate) fn consume_data(&mut self, n: usize) {
        self.src.consume(n);
        self.pos += n as u64;
        self.remaining -= n as u64;
    }

    /// The shared buffer the last [`TarReader::data`] slice lies in, if any.
    pub(crate) fn shared(&self) -> Option<&std::sync::Arc<super::Chunk>> {
        self.src.shared()
    }

    /// Data bytes of the current member not yet consumed.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Reads data of the current member into `buf` completely.
    fn read_data_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let chunk = self.data()?;
            if chunk.is_empty() {
                return Err(tar_err(self.pos, "sparse map runs past the member's data"));
            }
            let take = chunk.len().min(buf.len() - done);
            buf[done..done + take].copy_from_slice(&chunk[..take]);
            self.consume_data(take);
            done += take;
        }
        Ok(())
    }

    /// The next member, or `None` at the end of the archive.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        let rest = self.remaining + self.pad;
        self.remaining = 0;
        self.pad = 0;
        self.skip(rest)?;

        let mut local = Pax::default();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut first_offset: Option<u64> = None;
        // Extension headers of this entry so far (512 bytes each plus their payload).
        let mut entry_meta = 0u64;
        let mut hdr = [0u8; BLOCK];
        loop {
            let offset = self.pos;
            if !self.read_exact(&mut hdr)? {
                // A stream that ends without the two zero blocks: accept it like GNU tar does,
                // unless it ended inside a member's extension headers.
                if first_offset.is_some() {
                    return Err(tar_err(offset, "end of stream after an extension header"));
                }
                self.done = true;
                return Ok(None);
            }
            if hdr.iter().all(|&b| b == 0) {
                if first_offset.is_some() {
                    return Err(tar_err(offset, "end of archive after an extension header"));
                }
                self.done = true;
                return Ok(None);
            }
            let first_offset = *first_offset.get_or_insert(offset);
            verify_checksum(&hdr, offset)?;
            let size =
                parse_num(&hdr[124..136]).ok_or_else(|| tar_err(offset, "bad size field"))?;
            let typeflag = hdr[156];
            if matches!(typeflag, b'x' | b'g' | b'L' | b'K' | b'V' | b'N') {
                // Refused before its payload is read or skipped.
                let n = (BLOCK as u64).saturating_add(size);
                if typeflag == b'g' {
                    self.globals_meta = self.globals_meta.saturating_add(n);
                } else {
                    entry_meta = entry_meta.saturating_add(n);
                }
                self.charge_meta(n, entry_meta.saturating_add(self.globals_meta), offset)?;
            }
            match typeflag {
                b'x' => {
                    let data = self.read_meta(size, offset, "PAX header")?;
                    parse_pax(&data, &mut local, offset)?;
                }
                b'g' => {
                    let data = self.read_meta(size, offset, "PAX global header")?;
                    parse_pax(&data, &mut self.globals, offset)?;
                    let xattrs = std::mem::take(&mut self.globals.xattrs);
                    self.globals.xattrs = dedup_xattrs(xattrs);
                }
                b'L' => {
                    let data = self.read_meta(size, offset, "GNU long name")?;
                    long_name = Some(cstr(&data).to_vec());
                }
                b'K' => {
                    let data = self.read_meta(size, offset, "GNU long link name")?;
                    long_link = Some(cstr(&data).to_vec());
                }
                b'V' | b'N' => {
                    // Volume label, old GNU long-name list: nothing to extract.
                    self.skip(size + padding(size))?;
                }
                b'M' => return Err(tar_err(offset, "multi-volume archives are not supported")),
                _ => {
                    let entry =
                        self.build(&hdr, first_offset, size, local, long_name, long_link)?;
                    // What the entry carries (global xattrs are copied into every entry).
                    let carried = entry.path.len()
                        + entry.link.len()
                        + entry
                            .xattrs
                            .iter()
                            .map(|(k, v)| k.len() + v.len())
                            .sum::<usize>();
                    self.charge_meta(carried as u64, 0, first_offset)?;
                    return Ok(Some(entry));
                }
            }
        }
    }

    fn build(
        &mut self,
        hdr: &[u8; BLOCK],
        offset: u64,
        header_size: u64,
        local: Pax,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Entry> {
        let g = &self.globals;
        let gnu = &hdr[257..265] == b"ustar  \0";
        let ustar = &hdr[257..263] == b"ustar\0";
        let name_field = cstr(&hdr[0..100]);
        let path = if let Some(p) = local.path.clone().or(long_name) {
            p
        } else if let Some(p) = g.path.clone() {
            p
        } else if ustar && hdr[345] != 0 {
            let mut p = cstr(&hdr[345..500]).to_vec();
            p.push(b'/');
            p.extend_from_slice(name_field);
            p
        } else {
            name_field.to_vec()
        };
        let link = local
            .linkpath
            .clone()
            .or(long_link)
            .or_else(|| g.linkpath.clone())
            .unwrap_or_else(|| cstr(&hdr[157..257]).to_vec());
        let field = |r: std::ops::Range<usize>, what: &str| {
            parse_num(&hdr[r]).ok_or_else(|| tar_err(offset, format!("bad {what} field")))
        };
        let mode = (field(100..108, "mode")? & 0o7777) as u32;
        let uid = match local.uid.or(g.uid) {
            Some(v) => v,
            None => field(108..116, "uid")?,
        };
        let gid = match local.gid.or(g.gid) {
            Some(v) => v,
            None => field(116..124, "gid")?,
        };
        let mtime = match local.mtime.or(g.mtime) {
            Some(t) => t,
            None => Time {
                sec: i64::try_from(field(136..148, "mtime")?).unwrap_or(i64::MAX),
                nsec: 0,
            },
        };
        let atime = local.atime.or(g.atime);
        let size = local.size.or(g.size).unwrap_or(header_size);
        let (dev_major, dev_minor) = if ustar || gnu {
            let major = match local.devmajor.or(g.devmajor) {
                Some(v) => v,
                None => u32::try_from(field(329..337, "devmajor")?)
                    .map_err(|_| tar_err(offset, "device major out of range"))?,
            };
            let minor = match local.devminor.or(g.devminor) {
                Some(v) => v,
                None => u32::try_from(field(337..345, "devminor")?)
                    .map_err(|_| tar_err(offset, "device minor out of range"))?,
            };
            (major, minor)
        } else {
            (0, 0)
        };
        let mut xattrs = Vec::with_capacity(g.xattrs.len() + local.xattrs.len());
        xattrs.extend(g.xattrs.iter().cloned());
        xattrs.extend(local.xattrs);
        let xattrs = dedup_xattrs(xattrs);
        let names: usize = xattrs.iter().map(|(n, _)| n.len() + 1).sum();
        if names > XATTR_LIST_MAX {
            return Err(tar_err(
                offset,
                format!(
                    "{} extended attributes whose names take {names} bytes: more than Linux \
                     holds on one file ({XATTR_LIST_MAX})",
                    xattrs.len()
                ),
            ));
        }
        let typeflag = hdr[156];
        let kind = match typeflag {
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' | b'D' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'0' | 0 if path.ends_with(b"/") => Kind::Dir,
            // '0', '\0', '7' (contiguous), 'S' (GNU sparse) and unknown types are regular files,
            // as POSIX says.
            _ => Kind::Regular,
        };
        self.remaining = size;
        self.pad = padding(size);
        let mut entry = Entry {
            path,
            link,
            kind,
            mode,
            uid,
            gid,
            real_size: size,
            sparse: None,
            mtime,
            atime,
            dev_major,
            dev_minor,
            xattrs,
            offset,
        };
        if typeflag == b'S' && gnu {
            self.old_gnu_sparse(hdr, &mut entry)?;
        } else if kind == Kind::Regular
            && (local.sparse_major.is_some()
                || local.sparse_map.is_some()
                || !local.sparse_pairs.is_empty())
        {
            if let Some(name) = local.sparse_name {
                entry.path = name;
            }
            let real = local
                .sparse_realsize
                .ok_or_else(|| tar_err(offset, "PAX sparse file without a real size"))?;
            entry.real_size = real;
            let map = if local.sparse_major == Some(1) {
                self.pax_sparse_v1_map(offset)?
            } else if let Some(map) = local.sparse_map {
                pairs(&map, offset)?
            } else {
                pairs(&local.sparse_pairs, offset)?
            };
            entry.sparse = Some(map);
        }
        if let Some(map) = &entry.sparse {
            check_sparse(map, entry.real_size, self.remaining, offset)?;
        }
        Ok(entry)
    }

    /// Old GNU sparse (type `S`): four map entries in the header, more in extension blocks.
    fn old_gnu_sparse(&mut self, hdr: &[u8; BLOCK], entry: &mut Entry) -> Result<()> {
        let offset = entry.offset;
        let bad = || tar_err(offset, "bad GNU sparse map");
        let mut map = Vec::new();
        let push = |e: &[u8], map: &mut Vec<(u64, u64)>| -> Result<()> {
            if e.iter().all(|&b| b == 0) {
                return Ok(());
            }
            let o = parse_num(&e[0..12]).ok_or_else(bad)?;
            let n = parse_num(&e[12..24]).ok_or_else(bad)?;
            if map.len() >= MAX_SPARSE {
                return Err(tar_err(offset, "sparse map too large"));
            }
            map.push((o, n));
            Ok(())
        };
        for i in 0..4 {
            push(&hdr[386 + i * 24..386 + (i + 1) * 24], &mut map)?;
        }
        entry.real_size = parse_num(&hdr[483..495]).ok_or_else(bad)?;
        let mut extended = hdr[482] != 0;
        let mut ext = [0u8; BLOCK];
        // Extension blocks sit between the header and the data, outside the member's size.
        let (remaining, pad) = (self.remaining, self.pad);
        self.remaining = 0;
        self.pad = 0;
        while extended {
            if !self.read_exact(&mut ext)? {
                return Err(tar_err(self.pos, "end of stream in a GNU sparse map"));
            }
            for i in 0..21 {
                push(&ext[i * 24..(i + 1) * 24], &mut map)?;
            }
            extended = ext[504] != 0;
        }
        self.remaining = remaining;
        self.pad = pad;
        entry.sparse = Some(map);
        Ok(())
    }

    /// GNU PAX sparse 1.0: the map is text at the start of the member's data.
    fn pax_sparse_v1_map(&mut self, offset: u64) -> Result<Vec<(u64, u64)>> {
        let start = self.remaining;
        let mut numbers = Vec::new();
        let mut count: Option<u64> = None;
        let mut cur = Vec::new();
        loop {
            if let Some(c) = count {
                if numbers.len() as u64 == 2 * c {
                    break;
                }
            }
            let mut b = [0u8; 1];
            self.read_data_exact(&mut b)?;
            if b[0] == b'\n' {
                let n = parse_decimal(&cur).ok_or_else(|| tar_err(offset, "bad sparse map"))?;
                cur.clear();
                if count.is_none() {
                    if n > MAX_SPARSE as u64 {
                        return Err(tar_err(offset, "sparse map too large"));
                    }
                    count = Some(n);
                } else {
                    numbers.push(n);
                }
            } else {
                if cur.len() > 20 {
                    return Err(tar_err(offset, "bad sparse map"));
                }
                cur.push(b[0]);
            }
        }
        // The map is padded to a block boundary within the data.
        let used = start - self.remaining;
        let mut skip = padding(used);
        while skip > 0 {
            let mut b = [0u8; 1];
            self.read_data_exact(&mut b)?;
            skip -= 1;
        }
        pairs(&numbers, offset)
    }
}

/// Sparse segments must be ordered, non-overlapping, inside the real size, and add up to the
/// stored data.
fn check_sparse(map: &[(u64, u64)], real: u64, stored: u64, offset: u64) -> Result<()> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(o, n) in map {
        let e = o
            .checked_add(n)
            .ok_or_else(|| tar_err(offset, "sparse segment overflows"))?;
        if o < end || e > real {
            return Err(tar_err(
                offset,
                "sparse segments overlap or exceed the file's size",
            ));
        }
        end = e;
        total += n;
    }
    if total != stored {
        return Err(tar_err(
            offset,
            format!("sparse map covers {total} bytes but the member stores {stored}"),
        ));
    }
    Ok(())
}

fn verify_checksum(hdr: &[u8; BLOCK], offset: u64) -> Result<()> {
    let stored =
        parse_num(&hdr[148..156]).ok_or_else(|| tar_err(offset, "bad header checksum field"))?;
    // The checksum field counts as eight spaces. Plain sums (which vectorise) first; the
    // signed sum some old writers used only when the unsigned one does not match.
    let field: u32 = hdr[148..156].iter().map(|&b| u32::from(b)).sum();
    let all: u32 = hdr.iter().map(|&b| u32::from(b)).sum();
    let unsigned = u64::from(all - field + 8 * u32::from(b' '));
    if stored == unsigned {
        return Ok(());
    }
    let signed: i64 = hdr
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                i64::from(b' ')
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    if i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(tar_err(
            offset,
            "header checksum mismatch (not a tar stream?)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_num(b"0000644\0"), Some(0o644));
        assert_eq!(parse_num(b"   644 \0"), Some(0o644));
        assert_eq!(parse_num(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_num(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_num(&[0xff, 0xff]), None);
        assert_eq!(parse_num(b"12x"), None);
        assert_eq!(
            parse_num(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"12.5"),
            Some(Time {
                sec: 12,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"-1.5"),
            Some(Time {
                sec: -2,
                nsec: 500_000_000
            })
        );
        assert_eq!(parse_pax_time(b"7"), Some(Time { sec: 7, nsec: 0 }));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn pax_records() {
        let mut p = Pax::default();
        parse_pax(b"11 path=ab\n25 SCHILY.xattr.user.k=v\n", &mut p, 0).unwrap();
        assert_eq!(p.path.as_deref(), Some(&b"ab"[..]));
        assert_eq!(p.xattrs, vec![(b"user.k".to_vec(), b"v".to_vec())]);
        let x = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        assert_eq!(
            dedup_xattrs(vec![x("a", "1"), x("b", "2"), x("a", "3"), x("c", "4")]),
            vec![x("b", "2"), x("a", "3"), x("c", "4")]
        );
        assert!(parse_pax(b"99 path=ab\n", &mut p, 0).is_err());
        assert!(parse_pax(b"3 x", &mut p, 0).is_err());
    }
}
