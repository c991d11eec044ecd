//! Synthetic layers for benchmarks and fuzzing: deterministic tar streams written without
//! any dependency, and layer compression.

use std::io::Write;

use crate::extract::Compression;

/// A minimal ustar writer.
#[derive(Debug, Default)]
pub struct TarWriter {
    out: Vec<u8>,
}

/// The type of an entry written by [`TarWriter::entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link.
    Hardlink,
}

/// Every field of a ustar header that [`TarWriter::raw`] writes.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// The member's name (up to 100 bytes).
    pub name: &'a str,
    /// The type flag: `b'0'` file, `b'1'` hardlink, `b'2'` symlink, `b'3'` and `b'4'`
    /// character and block devices, `b'5'` directory, `b'6'` FIFO.
    pub typ: u8,
    /// The link target (up to 100 bytes).
    pub link: &'a str,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time (seconds since the epoch).
    pub mtime: u64,
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0width$o}", width = field.len() - 1);
    let s = s.as_bytes();
    let n = s.len().min(field.len() - 1);
    field[..n].copy_from_slice(&s[s.len() - n..]);
    field[field.len() - 1] = 0;
}

/// Copies `s` into `field`, cut to its length.
fn text_field(field: &mut [u8], s: &str) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

impl TarWriter {
    /// An empty archive.
    pub fn new() -> Self {
        TarWriter::default()
    }

    /// Appends an entry (`name` up to 100 bytes, `link` up to 100 bytes), owned by 0:0.
    pub fn entry(
        &mut self,
        name: &str,
        kind: EntryType,
        link: &str,
        data: &[u8],
        mode: u32,
    ) -> &mut Self {
        let typ = match kind {
            EntryType::File => b'0',
            EntryType::Dir => b'5',
            EntryType::Symlink => b'2',
            EntryType::Hardlink => b'1',
        };
        let header = Header {
            name,
            typ,
            link,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
        };
        self.raw(&header, data)
    }

    /// Appends an entry with every header field given, and `data` as its content.
    pub fn raw(&mut self, header: &Header<'_>, data: &[u8]) -> &mut Self {
        let mut h = [0u8; 512];
        text_field(&mut h[..100], header.name);
        octal(&mut h[100..108], u64::from(header.mode));
        octal(&mut h[108..116], header.uid);
        octal(&mut h[116..124], header.gid);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], header.mtime);
        h[156] = header.typ;
        text_field(&mut h[157..257], header.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        octal(&mut h[148..155], sum);
        h[155] = b' ';
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// Ends the archive (two zero blocks) and returns it.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0u8; 1024]);
        self.out
    }
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const WORDS: &[&str] = &[
    "the ",
    "of ",
    "and ",
    "lib ",
    "usr ",
    "share ",
    "python ",
    "module ",
    "config ",
    "static ",
    "void ",
    "int ",
    "return ",
    "struct ",
    "include\n",
    "define ",
    "const ",
    "char ",
    "error ",
    "debug\n",
];

fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        v.extend_from_slice(WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes());
        if rng.next().is_multiple_of(50) {
            v.extend_from_slice(&rng.next().to_le_bytes());
        }
    }
    v.truncate(len);
    v
}

/// A layer of `files` small text files (0-4 KiB, about 1.3 KiB on average) in directories of
/// 100, with a symlink and a hardlink per directory: the shape of a distribution layer.
pub fn small_files_layer(files: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut t = TarWriter::new();
    let dirs = files.div_ceil(100);
    t.entry("usr/", EntryType::Dir, "", b"", 0o755);
    for d in 0..dirs {
        let dir = format!("usr/d{d}/");
        t.entry(&dir, EntryType::Dir, "", b"", 0o755);
        for f in 0..(files - d * 100).min(100) {
            let len = (rng.next() % 4096) as usize * (rng.next() % 2 + 1) as usize / 3;
            let data = text(&mut rng, len);
            t.entry(&format!("{dir}f{f}.py"), EntryType::File, "", &data, 0o644);
        }
        t.entry(
            &format!("{dir}link"),
            EntryType::Symlink,
            "f0.py",
            b"",
            0o777,
        );
        t.entry(
            &format!("{dir}hard"),
            EntryType::Hardlink,
            &format!("{dir}f0.py"),
            b"",
            0o644,
        );
    }
    t.finish()
}

/// A layer of `count` files of `size` bytes each (compressible text with random runs).
pub fn large_files_layer(count: usize, size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut t = TarWriter::new();
    for i in 0..count {
        let data = text(&mut rng, size);
        t.entry(&format!("big{i}.bin"), EntryType::File, "", &data, 0o644);
    }
    t.finish()
}

/// Compresses a tar stream as a layer blob (gzip at level 6 like docker, zstd at level 3).
pub fn compress(tar: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(tar.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(tar)?;
            e.finish()
        }
        Compression::Zstd => zstd::encode_all(tar, 3),
    }
}
