//! The codec on arbitrary bytes: the first 8 bytes are the salt, the rest is decoded as
//! a file header, a record and a batch. No panic; a batch that checks out must hold
//! records that decode.
#![no_main]

use eventstore::codec::{self, DecodeOutcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let salt = u64::from_le_bytes(data[..8].try_into().unwrap());
    let bytes = &data[8..];
    let _ = codec::decode_header(bytes);
    let _ = codec::decode_file_header(bytes);
    let _ = codec::decode_file_header_version(bytes);
    if let Some(salt) = codec::torn_upgrade(bytes) {
        assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), salt);
    }
    let _ = codec::is_interrupted_creation(bytes);
    let _ = codec::decode_record(bytes);
    let _ = codec::parse_verified_record(bytes);
    if let Ok(DecodeOutcome::Complete { value, len }) = codec::parse_record(bytes) {
        assert!(len <= bytes.len());
        let _ = value.to_recorded();
    }
    let _ = codec::parse_batch_header(bytes, salt);
    if let Ok(DecodeOutcome::Complete { value, len }) = codec::parse_batch(bytes, salt) {
        assert!(len <= bytes.len());
        assert_eq!(value.records.len(), value.header.count as usize);
        // Every record belongs to one stream run, the first run starts at record 0.
        assert_eq!(value.runs.first().map(|r| r.1), Some(0));
        for &(at, l) in &value.records {
            let rec = &bytes[at as usize..(at + l) as usize];
            assert!(matches!(
                codec::parse_verified_record(rec),
                Ok(DecodeOutcome::Complete { .. })
            ));
        }
    }
});
