//! gzip bodies for the compressed routes: [`gzip`] (ordinary) and [`bomb`] (a small body that
//! inflates about 1000-fold).

use std::io::Write;

use flate2::{Compress, Compression, FlushCompress};

/// `data`, gzip-compressed.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

/// One valid gzip member of about `compressed_len` bytes whose content is zeros, about 1000 times
/// as long. Built in milliseconds without inflating anything: one MiB of zeros is deflated with a
/// full flush (byte-aligned, the window reset), and that block is repeated; the trailer's CRC-32
/// is combined from the block's.
pub fn bomb(compressed_len: usize) -> Vec<u8> {
    const BLOCK: usize = 1 << 20;
    let zeros = vec![0u8; BLOCK];
    let mut c = Compress::new(Compression::best(), false);
    let mut deflate = |input: &[u8], flush| {
        let mut out = Vec::with_capacity(BLOCK / 64);
        c.compress_vec(input, &mut out, flush).expect("deflate");
        out
    };
    let first = deflate(&zeros, FlushCompress::Full);
    // After a full flush the compressor starts afresh: the next block is valid anywhere after one.
    let block = deflate(&zeros, FlushCompress::Full);
    let last = deflate(&[], FlushCompress::Finish);
    let mut one = flate2::Crc::new();
    one.update(&zeros);
    let mut crc = flate2::Crc::new();
    crc.update(&zeros);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&first);
    let mut total = BLOCK as u64;
    while out.len() + block.len() + last.len() + 8 <= compressed_len.max(first.len() + 18) {
        out.extend_from_slice(&block);
        crc.combine(&one);
        total += BLOCK as u64;
    }
    out.extend_from_slice(&last);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn the_bomb_is_valid_gzip_of_zeros() {
        let bomb = super::bomb(16 * 1024);
        assert!(bomb.len() <= 16 * 1024, "{}", bomb.len());
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&bomb[..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert!(inflated.len() >= 500 * bomb.len(), "{}", inflated.len());
        assert!(inflated.iter().all(|b| *b == 0));
    }
}
