//! [`DiskImage`]: the contents of a device, held sparsely in RAM.
//!
//! An image is an anonymous private mapping of `capacity_bytes` (`MAP_NORESERVE`): untouched pages
//! read as zeros and cost no memory, so a 4 GiB device costs only what was written. A bitmap
//! remembers which blocks were ever written, so copying, comparing and saving an image cost time
//! in proportion to the written blocks, not the capacity. A device opened with `prefault=on`
//! populates its images instead (see [`DiskImage::populate`]): all of the capacity costs memory,
//! and no write page-faults.
//!
//! # Invariants
//! - `capacity_bytes` is a positive multiple of [`BLOCK_SIZE`] and the mapping's length.
//! - A block not in `written` holds zeros. (A block in `written` may hold zeros too.)
//!
//! Images are what a crash produces ([`crate::EmuDevice::crash`]) and what a device starts from
//! ([`crate::EmuDevice::with_image`]); they load from and save to plain image files.

use crate::EmuError;
use aios_device::BLOCK_SIZE;
use memmap2::{Advice, MmapMut, MmapOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

const BLOCK: u64 = BLOCK_SIZE as u64;

/// A sparse, block-addressed device image.
pub struct DiskImage {
    map: MmapMut,
    capacity_bytes: u64,
    written: BlockSet,
}

impl DiskImage {
    /// An all-zero image of `capacity_bytes` (a positive multiple of 4096).
    pub fn zeroed(capacity_bytes: u64) -> Result<DiskImage, EmuError> {
        let len = usize::try_from(capacity_bytes).ok().filter(|&len| {
            len > 0
                && len.is_multiple_of(BLOCK_SIZE)
                && capacity_bytes <= crate::config::CAPACITY_BYTES_MAX
        });
        let Some(len) = len else {
            return Err(EmuError::BadConfig(format!(
                "image of {capacity_bytes} bytes: must be a positive multiple of 4096"
            )));
        };
        let map = MmapOptions::new()
            .len(len)
            .no_reserve_swap()
            .map_anon()
            .map_err(|e| EmuError::Map {
                bytes: capacity_bytes,
                errno: e.raw_os_error().unwrap_or(libc::ENOMEM),
            })?;
        Ok(DiskImage {
            map,
            capacity_bytes,
            written: BlockSet::new(capacity_bytes / BLOCK),
        })
    }

    /// Loads an image file; the capacity is the file's length (a positive multiple of 4096).
    pub fn load(path: &Path) -> Result<DiskImage, EmuError> {
        let len_bytes = std::fs::metadata(path)
            .map_err(|source| image_io("stat", path, source))?
            .len();
        DiskImage::load_with_capacity(path, len_bytes)
    }

    /// Loads an image file into an image of `capacity_bytes`; the file may be shorter (the rest
    /// reads zero) but not longer. Only non-zero blocks are copied, so holes stay free.
    pub fn load_with_capacity(path: &Path, capacity_bytes: u64) -> Result<DiskImage, EmuError> {
        let mut file =
            std::fs::File::open(path).map_err(|source| image_io("open", path, source))?;
        let len_bytes = file
            .metadata()
            .map_err(|source| image_io("stat", path, source))?
            .len();
        if len_bytes == 0 || !len_bytes.is_multiple_of(BLOCK) || len_bytes > capacity_bytes {
            return Err(EmuError::ImageSize {
                path: path.to_path_buf(),
                len_bytes,
                capacity_bytes,
            });
        }
        let mut image = DiskImage::zeroed(capacity_bytes)?;
        let mut chunk = vec![0u8; 1 << 20];
        let mut offset_bytes = 0u64;
        while offset_bytes < len_bytes {
            let n = chunk.len().min((len_bytes - offset_bytes) as usize);
            file.read_exact(&mut chunk[..n])
                .map_err(|source| image_io("read", path, source))?;
            for (i, block) in chunk[..n].chunks_exact(BLOCK_SIZE).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    image.write_block(offset_bytes / BLOCK + i as u64, block);
                }
            }
            offset_bytes += n as u64;
        }
        Ok(image)
    }

    /// Writes the image to `path` (through a temporary file renamed into place). The file is
    /// sparse: only written blocks are stored.
    pub fn save(&self, path: &Path) -> Result<(), EmuError> {
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = Path::new(&tmp_name);
        let file = std::fs::File::create(tmp).map_err(|source| image_io("create", tmp, source))?;
        file.set_len(self.capacity_bytes)
            .map_err(|source| image_io("size", tmp, source))?;
        for (first, count) in self.written.runs() {
            let bytes = self.slice(first * BLOCK, count * BLOCK);
            file.write_all_at(bytes, first * BLOCK)
                .map_err(|source| image_io("write", tmp, source))?;
        }
        file.sync_all()
            .map_err(|source| image_io("sync", tmp, source))?;
        std::fs::rename(tmp, path).map_err(|source| image_io("rename", path, source))
    }

    /// A copy, costing time and memory in proportion to the written blocks.
    pub fn try_clone(&self) -> Result<DiskImage, EmuError> {
        let mut copy = DiskImage::zeroed(self.capacity_bytes)?;
        for (first, count) in self.written.runs() {
            let (offset, len) = (first * BLOCK, count * BLOCK);
            copy.slice_mut(offset, len)
                .copy_from_slice(self.slice(offset, len));
            copy.written.insert_run(first, count);
        }
        Ok(copy)
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Backs every page of the image with RAM now, so later writes take no page faults (each
    /// costs microseconds in a VM: more than a modelled 4 KiB write). Costs `capacity_bytes` of
    /// memory until the image is dropped, and time now: 0.1 to 1.5 s per GiB in our VM, the most
    /// when the host has not backed that memory before. Asks for transparent huge pages first (a
    /// hint the kernel may ignore; it makes populating faster here). Contents are kept.
    pub(crate) fn populate(&mut self) -> Result<(), EmuError> {
        // A hint only: a kernel without transparent huge pages refuses it, which changes nothing.
        let _ = self.map.advise(Advice::HugePage);
        match self.map.advise(Advice::PopulateWrite) {
            Ok(()) => Ok(()),
            // Before Linux 5.14 there is no MADV_POPULATE_WRITE: fault the pages in by hand.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.touch_pages();
                Ok(())
            }
            Err(e) => Err(EmuError::Map {
                bytes: self.capacity_bytes,
                errno: e.raw_os_error().unwrap_or(libc::ENOMEM),
            }),
        }
    }

    /// Writes one byte of every block back to itself: a write fault on every page, contents kept.
    fn touch_pages(&mut self) {
        for block in self.map.chunks_exact_mut(BLOCK_SIZE) {
            // `black_box` hides the value, so the store cannot be dropped as a no-op.
            block[0] = std::hint::black_box(block[0]);
        }
    }

    /// Copies whole blocks at `offset_bytes` into `out`.
    pub fn read_at(&self, offset_bytes: u64, out: &mut [u8]) -> Result<(), EmuError> {
        self.check_range(offset_bytes, out.len() as u64)?;
        out.copy_from_slice(self.slice(offset_bytes, out.len() as u64));
        Ok(())
    }

    /// Overwrites whole blocks at `offset_bytes` (for tests and harnesses that corrupt images).
    pub fn write_at(&mut self, offset_bytes: u64, data: &[u8]) -> Result<(), EmuError> {
        self.check_range(offset_bytes, data.len() as u64)?;
        self.put(offset_bytes, data);
        Ok(())
    }

    /// One block's contents, or `None` past the end.
    pub fn block(&self, index: u64) -> Option<&[u8]> {
        (index < self.capacity_bytes / BLOCK).then(|| self.slice(index * BLOCK, BLOCK))
    }

    /// The blocks whose contents differ between two images of the same capacity (all blocks
    /// when the capacities differ).
    pub fn diff_blocks(&self, other: &DiskImage) -> Vec<u64> {
        if self.capacity_bytes != other.capacity_bytes {
            return (0..self.capacity_bytes.max(other.capacity_bytes) / BLOCK).collect();
        }
        self.written
            .union(&other.written)
            .filter(|&b| self.block(b) != other.block(b))
            .collect()
    }

    /// A 64-bit FNV-1a digest of the contents (non-zero blocks and their indexes), for telling
    /// crash states apart cheaply. Equal images have equal digests.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::new();
        h.feed(&self.capacity_bytes.to_le_bytes());
        for b in self.written.iter() {
            let block = self.slice(b * BLOCK, BLOCK);
            if block.iter().any(|&x| x != 0) {
                h.feed(&b.to_le_bytes());
                h.feed(block);
            }
        }
        h.0
    }

    /// The blocks ever written (a superset of the non-zero blocks), ascending.
    pub fn written_blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.written.iter()
    }

    /// A block's bytes if it was ever written (else it reads zero); the index is validated.
    #[inline]
    pub(crate) fn block_if_written(&self, index: u64) -> Option<&[u8]> {
        self.written
            .contains(index)
            .then(|| self.slice(index * BLOCK, BLOCK))
    }

    /// `len` bytes at `offset`; the caller has validated the range (a command passed
    /// [`aios_device::Io::validate`] against this capacity).
    #[inline]
    pub(crate) fn slice(&self, offset_bytes: u64, len_bytes: u64) -> &[u8] {
        &self.map[offset_bytes as usize..(offset_bytes + len_bytes) as usize]
    }

    #[inline]
    fn slice_mut(&mut self, offset_bytes: u64, len_bytes: u64) -> &mut [u8] {
        &mut self.map[offset_bytes as usize..(offset_bytes + len_bytes) as usize]
    }

    /// Stores whole blocks at a validated, block-aligned offset.
    #[inline]
    pub(crate) fn put(&mut self, offset_bytes: u64, data: &[u8]) {
        self.region_mut(offset_bytes, data.len() as u64)
            .copy_from_slice(data);
    }

    /// Whole blocks at a validated, block-aligned offset, to be overwritten by the caller.
    #[inline]
    pub(crate) fn region_mut(&mut self, offset_bytes: u64, len_bytes: u64) -> &mut [u8] {
        self.written
            .insert_run(offset_bytes / BLOCK, len_bytes / BLOCK);
        self.slice_mut(offset_bytes, len_bytes)
    }

    /// Stores one block.
    #[inline]
    pub(crate) fn write_block(&mut self, index: u64, data: &[u8]) {
        self.put(index * BLOCK, &data[..BLOCK_SIZE]);
    }

    fn check_range(&self, offset_bytes: u64, len_bytes: u64) -> Result<(), EmuError> {
        let fits = offset_bytes.is_multiple_of(BLOCK)
            && len_bytes.is_multiple_of(BLOCK)
            && offset_bytes
                .checked_add(len_bytes)
                .is_some_and(|end| end <= self.capacity_bytes);
        if fits {
            Ok(())
        } else {
            Err(EmuError::OutOfRange {
                offset_bytes,
                len_bytes,
                capacity_bytes: self.capacity_bytes,
            })
        }
    }
}

impl PartialEq for DiskImage {
    /// Same capacity and the same bytes everywhere.
    fn eq(&self, other: &DiskImage) -> bool {
        self.capacity_bytes == other.capacity_bytes && self.diff_blocks(other).is_empty()
    }
}

impl Eq for DiskImage {}

impl std::fmt::Debug for DiskImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskImage")
            .field("capacity_bytes", &self.capacity_bytes)
            .field("written_blocks", &self.written.iter().count())
            .field("digest", &format_args!("{:016x}", self.digest()))
            .finish()
    }
}

fn image_io(op: &'static str, path: &Path, source: std::io::Error) -> EmuError {
    EmuError::ImageIo {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A bitmap of block indexes. Allocated zeroed, so a huge one stays sparse until touched.
#[derive(Debug, Clone)]
struct BlockSet {
    words: Vec<u64>,
}

impl BlockSet {
    fn new(blocks: u64) -> BlockSet {
        BlockSet {
            words: vec![0; blocks.div_ceil(64) as usize],
        }
    }

    fn insert_run(&mut self, first: u64, count: u64) {
        for b in first..first + count {
            self.words[(b / 64) as usize] |= 1 << (b % 64);
        }
    }

    #[inline]
    fn contains(&self, b: u64) -> bool {
        self.words
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words
            .iter()
            .enumerate()
            .filter(|(_, &w)| w != 0)
            .flat_map(|(i, &w)| BitIter(w).map(move |bit| i as u64 * 64 + bit))
    }

    fn union<'a>(&'a self, other: &'a BlockSet) -> impl Iterator<Item = u64> + 'a {
        let words = self
            .words
            .iter()
            .zip(other.words.iter())
            .map(|(a, b)| a | b);
        words
            .enumerate()
            .filter(|&(_, w)| w != 0)
            .flat_map(|(i, w)| BitIter(w).map(move |bit| i as u64 * 64 + bit))
    }

    /// Maximal runs `(first, count)` of consecutive members, ascending.
    fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut blocks = self.iter().peekable();
        std::iter::from_fn(move || {
            let first = blocks.next()?;
            let mut count = 1;
            while blocks.next_if(|&b| b == first + count).is_some() {
                count += 1;
            }
            Some((first, count))
        })
    }
}

/// The set bits of a word, ascending.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(u64::from(bit))
    }
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_compare_and_file_round_trip() {
        let mut a = DiskImage::zeroed(64 * BLOCK).unwrap();
        a.write_at(3 * BLOCK, &[7u8; 2 * BLOCK_SIZE]).unwrap();
        a.write_at(63 * BLOCK, &[9u8; BLOCK_SIZE]).unwrap();
        let b = a.try_clone().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(b.written_blocks().collect::<Vec<_>>(), [3, 4, 63]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        a.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 * BLOCK);
        let c = DiskImage::load(&path).unwrap();
        assert_eq!(a, c);
        let bigger = DiskImage::load_with_capacity(&path, 128 * BLOCK).unwrap();
        assert_eq!(bigger.block(63), Some(&[9u8; BLOCK_SIZE][..]));
        assert!(matches!(
            DiskImage::load_with_capacity(&path, 32 * BLOCK),
            Err(EmuError::ImageSize { .. })
        ));

        let mut d = c.try_clone().unwrap();
        d.write_at(4 * BLOCK, &[0u8; BLOCK_SIZE]).unwrap();
        assert_eq!(a.diff_blocks(&d), [4]);
        assert_ne!(a.digest(), d.digest());
        assert_ne!(a, d);
    }

    #[test]
    fn zeros_written_equal_zeros_never_written() {
        let a = DiskImage::zeroed(8 * BLOCK).unwrap();
        let mut b = DiskImage::zeroed(8 * BLOCK).unwrap();
        b.write_at(0, &[0u8; BLOCK_SIZE]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
    }

    /// The fraction of the image's mapping that is resident.
    fn resident_fraction(image: &DiskImage) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let pages = image.map.len().div_ceil(page);
        let mut vec = vec![0u8; pages];
        let addr = image.map.as_ptr().cast_mut().cast();
        // SAFETY: the range is the whole live mapping (page aligned); `vec` has a byte per page.
        let rc = unsafe { libc::mincore(addr, image.map.len(), vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&v| v & 1 != 0).count() as f64 / pages as f64
    }

    #[test]
    fn populate_backs_every_page_and_keeps_contents() {
        for by_hand in [false, true] {
            let mut a = DiskImage::zeroed(256 * BLOCK).unwrap();
            a.write_at(5 * BLOCK, &[3u8; BLOCK_SIZE]).unwrap();
            let before = a.try_clone().unwrap();
            assert!(resident_fraction(&a) < 0.5, "a fresh image is sparse");
            if by_hand {
                a.touch_pages();
            } else {
                a.populate().unwrap();
            }
            assert_eq!(resident_fraction(&a), 1.0, "by hand: {by_hand}");
            assert_eq!(a, before);
            assert_eq!(a.written_blocks().collect::<Vec<_>>(), [5]);
        }
    }

    #[test]
    fn bad_ranges_are_errors() {
        let mut a = DiskImage::zeroed(8 * BLOCK).unwrap();
        let mut buf = [0u8; BLOCK_SIZE];
        assert!(a.read_at(8 * BLOCK, &mut buf).is_err());
        assert!(a.read_at(100, &mut buf).is_err());
        assert!(a.write_at(u64::MAX - 10, &buf).is_err());
        assert!(a.block(8).is_none());
        assert!(DiskImage::zeroed(0).is_err());
        assert!(DiskImage::zeroed(100).is_err());
    }
}
