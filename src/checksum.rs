//! CRC32 (IEEE 802.3, the checksum `crc32fast` computes) of records, one at a time or
//! four at a time.
//!
//! A record is a few hundred bytes, and one CRC of a few hundred bytes is bound by the
//! latency of its own chain of carry-less multiplications, not by the CPU's throughput:
//! the read path checks every record it returns, so it asks for four at once, and on a
//! CPU with AVX-512 and `VPCLMULQDQ` a kernel computes the four side by side (see
//! [`x4`]); elsewhere, or for inputs it does not suit, each goes through `crc32fast`.
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
#[inline]
pub(crate) fn crc32x4(inputs: [&[u8]; 4]) -> [u32; 4] {
    #[cfg(target_arch = "x86_64")]
    if x4::suits(&inputs) && x4::available() {
        let [a, b, c, d] = inputs;
        // SAFETY: `available` checked, on this CPU, every feature the kernel enables;
        // `suits` checked that every input has at least 4 bytes.
        return unsafe { x4::crc32x4(a, b, c, d) };
    }
    inputs.map(crc32)
}

/// Whether `crc32x4` can use the four-lane kernel on this CPU (for the tests and the
/// bench, which say which path they measured).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x4::available();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether `crc32x4(inputs)` runs the four-lane kernel (rather than `crc32` per input).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn uses_kernel(inputs: &[&[u8]; 4]) -> bool {
    #[cfg(target_arch = "x86_64")]
    return x4::suits(inputs) && x4::available();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = inputs;
        false
    }
}

/// The four-lane kernel: four CRCs side by side in AVX-512 registers.
///
/// Each input gets its own `ZMM` accumulator, whose four 128-bit lanes are four
/// interleaved streams of 16-byte blocks (the usual fold-by-4, in one register), so the
/// loop loads 64 contiguous bytes per input and folds them with two `VPCLMULQDQ`s; the
/// four inputs' chains are independent, which hides each chain's latency behind the
/// others'. At the end each accumulator collapses to 128 bits, the four remainders are
/// gathered into one register (one input per lane), and the reduction to 32 bits and
/// the Barrett step run once for all four.
///
/// Lengths: in the raw (zero-initialised) CRC, leading zero bytes leave the register
/// unchanged, and `crc32fast`'s initial value `0xFFFFFFFF` equals inverting the
/// message's first four bytes. So every input is left-padded with zeros to a multiple
/// of 64 bytes, and its first four bytes are inverted on the way in; its first group
/// of 64 bytes is loaded with a byte mask that enables only the input's own bytes,
/// every later group is a plain load. When the four have the same number of groups
/// (lengths within 60 bytes of their common multiple of 64: the common case) they go
/// side by side to the end; otherwise side by side while all have groups left, then
/// the longer ones alone (an accumulator ends where its input does: the collapse and
/// the reduction do not care where that is).
#[cfg(target_arch = "x86_64")]
mod x4 {
    use core::arch::x86_64::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Shortest input the kernel takes. It needs four bytes (the initial value is
    /// folded into the first four), and it costs the same (about 3.9 ns an input here)
    /// for anything up to 64 bytes, while `crc32fast` takes 3.9 ns at 16 bytes, 5.2 at
    /// 32 and 6.2 at 48.
    pub(super) const MIN_LEN: usize = 32;
    /// Longest input the kernel takes: from a few KiB on, `crc32fast`'s 8- and 16-stream
    /// paths run near memory speed on one input (at 4 KiB the kernel is only 15% ahead
    /// here: 66 against 76 ns an input).
    pub(super) const MAX_LEN: usize = 4096;
    /// Most padding the kernel may take, counted as `4 * longest - sum of lengths`:
    /// the bytes by which the others fall short of the longest input. Past the shortest
    /// input's end the kernel runs fewer than four inputs side by side, and the last
    /// one alone is bound by the latency of its chain (about 7 cycles per 64 bytes), as
    /// `crc32fast` is. Measured here, on a loaded machine: three inputs of 64 bytes and
    /// one of 1088 (padding 3072) take 22 ns an input through the kernel against 28;
    /// with one of 2048 (padding 5952), 30 against 26; three of 150 and one of 700
    /// (padding 1650), 19 against 28. 2048 keeps a margin.
    pub(super) const MAX_PADDING: usize = 2048;

    /// Whether the kernel suits these four inputs (see the constants).
    #[inline]
    pub(super) fn suits(inputs: &[&[u8]; 4]) -> bool {
        let (mut min, mut max, mut sum) = (usize::MAX, 0, 0);
        for s in inputs {
            min = min.min(s.len());
            max = max.max(s.len());
            sum += s.len();
        }
        min >= MIN_LEN && max <= MAX_LEN && 4 * max - sum <= MAX_PADDING
    }

    /// Whether this CPU has every feature the kernel enables; detected once per process.
    #[inline]
    pub(super) fn available() -> bool {
        // 0: not detected yet, 1: no, 2: yes. Racing threads store the same answer.
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.load(Ordering::Relaxed) {
            2 => true,
            1 => false,
            _ => {
                let yes = is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("vpclmulqdq");
                STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
        }
    }

    // Fold constants for a distance of `D` bits: the pair `(reflect(x^(D+32) mod P) << 1,
    // reflect(x^(D-32) mod P) << 1)`, P the CRC-32 polynomial 0x104C11DB7 (the same
    // values as crc32fast's K1..K4 for D = 512 and D = 128; the others computed the
    // same way). The low one multiplies a lane's low (earlier) 64 bits.
    const K512: (i64, i64) = (0x1_5444_2bd4, 0x1_c6e4_1596);
    const K384: (i64, i64) = (0x0_3db1_ecdc, 0x1_7435_9406);
    const K256: (i64, i64) = (0x0_f1da_05aa, 0x1_5a54_6366);
    const K128: (i64, i64) = (0x1_7519_97d0, 0x0_ccaa_009e);
    /// `reflect(x^64 mod P) << 1`: folds the 96-bit intermediate to 64 bits.
    const K64: i64 = 0x1_63cd_6124;
    /// Barrett reduction: P itself (reflected, with its x^32 term) and
    /// `floor(x^64 / P)` (reflected).
    const P_X: i64 = 0x1_DB71_0641;
    const U_PRIME: i64 = 0x1_F701_1641;

    /// The four CRCs, as `crc32fast::hash` of each input.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX-512F, AVX-512BW and VPCLMULQDQ ([`available`]). Every input
    /// must be at least 4 bytes long (the kernel is exact for any such lengths; [`suits`]
    /// is only about speed).
    ///
    /// The inputs come as four arguments, not an array: an array is passed through
    /// memory, and when the caller has just written it with 16-byte stores, the
    /// kernel's 8-byte loads of the lengths cannot be forwarded from them and wait for
    /// the stores to retire (that alone cost 12 ns a call here).
    #[target_feature(enable = "avx512f,avx512bw,vpclmulqdq")]
    pub(super) unsafe fn crc32x4(a: &[u8], b: &[u8], c: &[u8], d: &[u8]) -> [u32; 4] {
        let inputs = [a, b, c, d];
        debug_assert!(inputs.iter().all(|s| s.len() >= 4));
        let longest = inputs.iter().map(|s| s.len()).max().unwrap_or(0);
        let shortest = inputs.iter().map(|s| s.len()).min().unwrap_or(0);
        let acc = if longest.div_ceil(64) * 64 - shortest <= 60 {
            same_groups(inputs)
        } else {
            own_groups(inputs)
        };

        // Collapse each accumulator's four lanes (streams at 16-byte offsets 0, 16, 32,
        // 48 of the last group) to one: lane j moves forward by 48 - 16 j bytes and the
        // four are added. First a 4x4 transpose of 128-bit lanes, so that register j
        // holds lane j of every input (input i in lane i); then each register moves by
        // its own distance with constants the same in all lanes.
        let lo = |a, b| _mm512_shuffle_i64x2::<0b01_00_01_00>(a, b);
        let hi = |a, b| _mm512_shuffle_i64x2::<0b11_10_11_10>(a, b);
        let even = |a, b| _mm512_shuffle_i64x2::<0b10_00_10_00>(a, b);
        let odd = |a, b| _mm512_shuffle_i64x2::<0b11_01_11_01>(a, b);
        // [a0.0, a0.1, a1.0, a1.1], [a0.2, a0.3, a1.2, a1.3], likewise for a2, a3.
        let (t0, t1) = (lo(acc[0], acc[1]), hi(acc[0], acc[1]));
        let (t2, t3) = (lo(acc[2], acc[3]), hi(acc[2], acc[3]));
        let (l0, l1, l2, l3) = (even(t0, t2), odd(t0, t2), even(t1, t3), odd(t1, t3));
        let (k384, k256, k128) = (pair(K384), pair(K256), pair(K128));
        let x = _mm512_ternarylogic_epi64::<0x96>(
            _mm512_ternarylogic_epi64::<0x96>(
                _mm512_clmulepi64_epi128::<0x00>(l0, k384),
                _mm512_clmulepi64_epi128::<0x11>(l0, k384),
                _mm512_clmulepi64_epi128::<0x00>(l1, k256),
            ),
            _mm512_ternarylogic_epi64::<0x96>(
                _mm512_clmulepi64_epi128::<0x11>(l1, k256),
                _mm512_clmulepi64_epi128::<0x00>(l2, k128),
                _mm512_clmulepi64_epi128::<0x11>(l2, k128),
            ),
            l3,
        );

        // 128 -> 96 -> 64 bits, then Barrett to 32, in every lane at once (the steps of
        // crc32fast's `reduce_128_to_crc` with nothing left to fold).
        let low32 = |v: __m512i| _mm512_maskz_mov_epi32(0x1111, v);
        let x = _mm512_xor_si512(
            _mm512_clmulepi64_epi128::<0x10>(x, k128),
            _mm512_bsrli_epi128::<8>(x),
        );
        let x = _mm512_xor_si512(
            _mm512_clmulepi64_epi128::<0x00>(low32(x), _mm512_set1_epi64(K64)),
            _mm512_bsrli_epi128::<4>(x),
        );
        let pu = pair((P_X, U_PRIME));
        let t1 = _mm512_clmulepi64_epi128::<0x10>(low32(x), pu);
        let t2 = _mm512_clmulepi64_epi128::<0x00>(low32(t1), pu);
        // The CRC is bits 32..63 of each lane; gather the four into the low 128 bits.
        let crcs = _mm512_maskz_compress_epi32(0x2222, _mm512_xor_si512(x, t2));
        let mut out = [0u32; 4];
        // SAFETY: `out` is 16 writable bytes; the store needs no alignment.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm512_castsi512_si128(crcs)) };
        out.map(|c| !c)
    }

    /// The accumulators when every input has the same number of groups of 64 bytes
    /// and its first four bytes whole in group 0 (lengths within 60 bytes of their
    /// common multiple of 64: the common case): all four side by side throughout.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,vpclmulqdq")]
    fn same_groups(inputs: [&[u8]; 4]) -> [__m512i; 4] {
        let groups = inputs[0].len().div_ceil(64);
        let pad = inputs.map(|s| 64 * groups - s.len());
        debug_assert!(pad.iter().all(|&p| p <= 60));
        let k512 = pair(K512);
        // Group 0 needs no fold: it is the first thing in every accumulator.
        let mut acc = [0, 1, 2, 3].map(|i| load_first(inputs[i], pad[i]));
        for g in 1..groups {
            for i in 0..4 {
                // In bounds: from group 1 on, the group's 64 bytes are inside the
                // input (`64 * g >= 64 > pad[i]`, and `64 * (g + 1) <= 64 * groups`).
                let at = 64 * g - pad[i];
                let bytes = &inputs[i][at..at + 64];
                // SAFETY: `bytes` is 64 readable bytes; the load needs no alignment.
                let v = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
                acc[i] = fold(acc[i], v, k512);
            }
        }
        acc
    }

    /// The accumulators for inputs of different numbers of groups: each input is
    /// left-padded to its own multiple of 64 bytes and stops when its groups are done
    /// (an accumulator ends where its input does; the collapse and the reduction do
    /// not care where that is), so the kernel's work is the inputs' groups, not four
    /// times the longest's. Side by side while all four have groups left, then the
    /// longer ones alone.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,vpclmulqdq")]
    fn own_groups(inputs: [&[u8]; 4]) -> [__m512i; 4] {
        let groups = inputs.map(|s| s.len().div_ceil(64));
        let pad = [0, 1, 2, 3].map(|i| 64 * groups[i] - inputs[i].len());
        // The first four bytes' lanes, in group 0 and (if `pad > 60`) group 1.
        let first4 = pad.map(|p| 0xFu128 << p);
        let ones = _mm512_set1_epi8(-1);
        let k512 = pair(K512);
        // Group `g >= 1` of input `i`: 64 whole bytes of it (`64 g - pad >= 1`, and the
        // group ends at or before the input).
        let load = |i: usize, g: usize| {
            let at = 64 * g - pad[i];
            let bytes = &inputs[i][at..at + 64];
            // SAFETY: `bytes` is 64 readable bytes; the load needs no alignment.
            unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
        };
        // Group 1, with the rest of the first four bytes inverted where they spill.
        let load1 = |i: usize| {
            let v = load(i, 1);
            _mm512_mask_sub_epi8(v, (first4[i] >> 64) as u64, ones, v)
        };
        // Group 0 needs no fold: it is the first thing in every accumulator.
        let mut acc = [0, 1, 2, 3].map(|i| {
            let (s, p) = (inputs[i], pad[i]);
            debug_assert!(64 - p <= s.len());
            let ptr = s.as_ptr().wrapping_sub(p);
            // SAFETY: the masked load reads only lanes `p..64`, that is `s[..64 - p]`,
            // in bounds as the input fills its padded message from `p` on, to the end
            // of its last group; lanes `0..p` are not accessed (fault suppression) and
            // read as zero. `wrapping_sub` keeps the pointer arithmetic defined.
            let v = unsafe { _mm512_maskz_loadu_epi8(u64::MAX << p, ptr.cast()) };
            _mm512_mask_sub_epi8(v, first4[i] as u64, ones, v)
        });
        let fewest = groups.iter().copied().min().unwrap_or(1);
        let most = groups.iter().copied().max().unwrap_or(1);
        // All four inputs side by side while every one has groups left...
        let mut g = 1;
        if fewest > 1 {
            for (i, a) in acc.iter_mut().enumerate() {
                *a = fold(*a, load1(i), k512);
            }
            g = 2;
            while g < fewest {
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = fold(*a, load(i, g), k512);
                }
                g += 1;
            }
        }
        // ...then the longer ones alone.
        while g < most {
            for (i, a) in acc.iter_mut().enumerate() {
                if g < groups[i] {
                    let v = if g == 1 { load1(i) } else { load(i, g) };
                    *a = fold(*a, v, k512);
                }
            }
            g += 1;
        }
        acc
    }

    /// Group 0 (its first 64 bytes, padding included) of an input whose first byte
    /// sits at `pad <= 60`: zeros, then the input's bytes, its first four inverted (the
    /// initial value).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn load_first(s: &[u8], pad: usize) -> __m512i {
        debug_assert!(pad <= 60 && 64 - pad <= s.len());
        let ptr = s.as_ptr().wrapping_sub(pad);
        // SAFETY: the masked load reads only lanes `pad..64`, that is `s[..64 - pad]`,
        // in bounds as the input fills the padded message from `pad` on, past the
        // group's end; lanes `0..pad` are not accessed (fault suppression) and read as
        // zero. `wrapping_sub` keeps the pointer arithmetic defined.
        let v = unsafe { _mm512_maskz_loadu_epi8(u64::MAX << pad, ptr.cast()) };
        _mm512_mask_sub_epi8(v, 0xF << pad, _mm512_set1_epi8(-1), v)
    }

    /// `acc` moved forward by 64 bytes (each lane by 512 bits), plus `v`.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn fold(acc: __m512i, v: __m512i, k: __m512i) -> __m512i {
        _mm512_ternarylogic_epi64::<0x96>(
            _mm512_clmulepi64_epi128::<0x00>(acc, k),
            _mm512_clmulepi64_epi128::<0x11>(acc, k),
            v,
        )
    }

    /// A constant pair `(low, high)` in every 128-bit lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn pair((lo, hi): (i64, i64)) -> __m512i {
        _mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic lengths, offsets and contents without a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn want(inputs: [&[u8]; 4]) -> [u32; 4] {
        inputs.map(crc32fast::hash)
    }

    /// `crc32x4` and (where the CPU has it and the inputs are long enough for it) the
    /// kernel itself, against `crc32fast`; returns whether the kernel ran.
    fn check(inputs: [&[u8]; 4]) -> bool {
        let want = want(inputs);
        let lens = inputs.map(<[u8]>::len);
        assert_eq!(crc32x4(inputs), want, "crc32x4, lengths {lens:?}");
        kernel_check(inputs, want)
    }

    #[cfg(target_arch = "x86_64")]
    fn kernel_check(inputs: [&[u8]; 4], want: [u32; 4]) -> bool {
        if !kernel_available() || inputs.iter().any(|s| s.len() < 4) {
            return false;
        }
        // SAFETY: the CPU has the kernel's features, and every input has 4 bytes.
        let got = unsafe { x4::crc32x4(inputs[0], inputs[1], inputs[2], inputs[3]) };
        let lens = inputs.map(<[u8]>::len);
        assert_eq!(got, want, "kernel, lengths {lens:?}");
        true
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn kernel_check(_: [&[u8]; 4], _: [u32; 4]) -> bool {
        false
    }

    #[test]
    fn agrees_with_crc32fast() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        for len in [0, 1, 15, 16, 63, 64, 65, 300, 317, 1024, 2999] {
            assert_eq!(crc32(&data[..len]), crc32fast::hash(&data[..len]));
        }
        check([&data[..0], &data[1..300], &data[5..317], &data[7..2999]]);
        check([&data[..313], &data[1..300], &data[5..317], &data[7..290]]);
    }

    /// Every length 0..=700 in every lane, the other lanes at assorted lengths (equal,
    /// a little shorter or longer, far apart, tiny), so every padding offset and every
    /// position of the inverted first four bytes meets every other.
    #[test]
    fn every_length_in_every_lane() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let data = rng.bytes(2000);
        let mut kernel_runs = 0;
        for len in 0..=700usize {
            let others = [
                len,
                len.saturating_sub(1),
                len + 1,
                len.saturating_sub(63),
                len + 64,
                len + 200,
                317,
                4,
                rng.below(701),
            ];
            for lane in 0..4 {
                for (k, &other) in others.iter().enumerate() {
                    let mut inputs: [&[u8]; 4] = [&[]; 4];
                    for (i, input) in inputs.iter_mut().enumerate() {
                        let at = (lane * 7 + i * 131 + k * 17) % 500;
                        let n = if i == lane { len } else { other + i % 2 };
                        *input = &data[at..at + n];
                    }
                    kernel_runs += usize::from(check(inputs));
                }
            }
        }
        if kernel_available() {
            assert!(kernel_runs > 20_000, "the kernel ran {kernel_runs} times");
        }
    }

    /// Thousands of random quadruples: lengths up to 5000 (past every threshold), some
    /// close together and some not, random contents and start offsets.
    #[test]
    fn random_quadruples() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let data = rng.bytes(12_000);
        for round in 0..6000 {
            let base = rng.below(5001);
            let spread = [8, 64, 300, 5001][round % 4];
            let mut inputs: [&[u8]; 4] = [&[]; 4];
            for input in &mut inputs {
                let n = (base + rng.below(spread)).min(5000);
                let at = rng.below(data.len() - n + 1);
                *input = &data[at..at + n];
            }
            check(inputs);
        }
    }

    /// Constant contents, where a lost or doubled initial value or a misplaced zero lane
    /// would not be masked by varied data.
    #[test]
    fn all_zero_and_all_ones() {
        for byte in [0x00u8, 0xFF] {
            let data = vec![byte; 5000];
            for len in (0..700usize).chain([1000, 2047, 2048, 4095, 4096, 4097, 5000]) {
                for other in [len, len.saturating_sub(5), len + 3, 200] {
                    let o = other.min(5000);
                    check([&data[..len], &data[..o], &data[1..o.max(1)], &data[..len]]);
                }
            }
        }
    }

    /// Every start offset 1..63 into a buffer (the kernel's 64-byte loads are unaligned,
    /// and its partial first group reads a masked window that starts before the input).
    #[test]
    fn unaligned_inputs() {
        let mut rng = Rng(42);
        let data = rng.bytes(4000);
        for offset in 0..64 {
            for len in [64, 65, 100, 150, 313, 317, 700, 1500] {
                let a = &data[offset..offset + len];
                let b = &data[offset + 1..offset + 1 + len + offset % 5];
                let c = &data[2 * offset..2 * offset + len.saturating_sub(offset)];
                let d = &data[3 * offset + 7..3 * offset + 7 + len + 31];
                check([a, b, c, d]);
            }
        }
    }

    /// Lengths at the limits of `crc32x4`'s choice of path: the padding (`4 * longest -
    /// sum of lengths`) at the threshold, one under and one over; the shortest and
    /// longest lengths and one past them.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_fallback_thresholds() {
        use x4::{MAX_LEN, MAX_PADDING, MIN_LEN};
        let mut rng = Rng(7);
        let data = rng.bytes(MAX_LEN + 600);
        let third = MAX_PADDING / 3;
        for longest in [MIN_LEN + MAX_PADDING, 1000 + MAX_PADDING, MAX_LEN] {
            for padding in [MAX_PADDING - 1, MAX_PADDING, MAX_PADDING + 1] {
                // Three inputs short of the longest by `x`, `y`, `z`: x + y + z = padding.
                let (x, y) = (third, third + 1);
                let z = padding - x - y;
                let lens = [longest - x, longest - y, longest - z, longest];
                let inputs: [&[u8]; 4] = [
                    &data[..lens[0]],
                    &data[3..3 + lens[1]],
                    &data[64..64 + lens[2]],
                    &data[9..9 + lens[3]],
                ];
                assert_eq!(
                    x4::suits(&inputs),
                    padding <= MAX_PADDING && lens.iter().all(|&n| n >= MIN_LEN),
                    "lengths {lens:?}"
                );
                check(inputs);
            }
        }
        for shortest in [MIN_LEN - 1, MIN_LEN, MIN_LEN + 1] {
            let inputs: [&[u8]; 4] = [
                &data[..100],
                &data[1..1 + shortest],
                &data[..90],
                &data[5..105],
            ];
            assert_eq!(x4::suits(&inputs), shortest >= MIN_LEN);
            check(inputs);
        }
        for longest in [MAX_LEN - 1, MAX_LEN, MAX_LEN + 1] {
            let inputs: [&[u8]; 4] = [
                &data[..longest],
                &data[1..longest],
                &data[..longest - 100],
                &data[..longest - 200],
            ];
            assert_eq!(x4::suits(&inputs), longest <= MAX_LEN);
            check(inputs);
        }
    }

    /// The kernel path is taken where the CPU has it: on such a CPU, eligible inputs run
    /// through the kernel (so the fallback cannot hide a broken kernel), and its results
    /// are `crc32fast`'s. On this project's reference machine (AVX-512 and VPCLMULQDQ)
    /// it must be available: `ES_EXPECT_CRC_KERNEL=1` makes its absence a failure.
    #[test]
    fn the_kernel_is_used_where_available() {
        if std::env::var_os("ES_EXPECT_CRC_KERNEL").is_some() {
            assert!(kernel_available(), "no AVX-512 CRC kernel on this CPU");
        }
        let mut rng = Rng(99);
        let data = rng.bytes(2000);
        let inputs: [&[u8]; 4] = [
            &data[..313],
            &data[400..717],
            &data[800..1100],
            &data[1200..1520],
        ];
        assert_eq!(uses_kernel(&inputs), kernel_available());
        assert_eq!(check(inputs), kernel_available());
        #[cfg(target_arch = "x86_64")]
        if kernel_available() {
            // A one-bit change in any lane changes that lane's CRC only.
            let mut copy = data.clone();
            copy[1000] ^= 4;
            let changed: [&[u8]; 4] = [
                &copy[..313],
                &copy[400..717],
                &copy[800..1100],
                &copy[1200..1520],
            ];
            // SAFETY: the CPU has the kernel's features; every input has 4 bytes.
            let [i0, i1, i2, i3] = inputs;
            let [c0, c1, c2, c3] = changed;
            let (a, b) = unsafe { (x4::crc32x4(i0, i1, i2, i3), x4::crc32x4(c0, c1, c2, c3)) };
            assert_eq!([a[0], a[1], a[3]], [b[0], b[1], b[3]]);
            assert_ne!(a[2], b[2]);
        }
    }
}
