//! CRC32 (IEEE 802.3, the checksum `crc32fast` computes) of records, one at a time or
//! four at a time.
//!
//! A record is a few hundred bytes, and one CRC of a few hundred bytes is bound by the
//! latency of its own chain of carry-less multiplications, not by the CPU's throughput:
//! the read path checks every record it returns, so it asks for four at once.
//!
//! Interface fixed for 0.2 (docs/design.md); the bodies are free to change.

/// CRC32 of `bytes`, as `crc32fast::hash`, through a hasher made once per thread
/// (`crc32fast::hash` detects the CPU's features on every call, which shows at one
/// call per record).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    thread_local! {
        static PROTO: crc32fast::Hasher = crc32fast::Hasher::new();
    }
    let mut h = PROTO.with(Clone::clone);
    h.update(bytes);
    h.finalize()
}

/// The CRC32 of each of four inputs, `[crc32(inputs[0]), .., crc32(inputs[3])]`, of any
/// lengths (empty included).
// The read path (issue 10) is its first caller.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn crc32x4(inputs: [&[u8]; 4]) -> [u32; 4] {
    inputs.map(crc32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_crc32fast() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        for len in [0, 1, 15, 16, 63, 64, 65, 300, 317, 1024, 2999] {
            assert_eq!(crc32(&data[..len]), crc32fast::hash(&data[..len]));
        }
        let got = crc32x4([&data[..0], &data[1..300], &data[5..317], &data[7..2999]]);
        let want = [
            crc32fast::hash(&data[..0]),
            crc32fast::hash(&data[1..300]),
            crc32fast::hash(&data[5..317]),
            crc32fast::hash(&data[7..2999]),
        ];
        assert_eq!(got, want);
    }
}
