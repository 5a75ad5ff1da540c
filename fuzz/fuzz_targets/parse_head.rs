//! The HTTP request-head classifier: any bytes a prober sends, in any split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psentinel::probe::{parse_head, Head, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    // The daemon calls it with at most MAX_HEAD bytes; longer input checks the bound holds.
    for eof in [false, true] {
        let h = parse_head(data, eof);
        // At EOF there is nothing to wait for, and past the limit nothing more is read.
        assert!(!(eof && h == Head::Partial), "Partial at EOF: {data:?}");
        assert!(
            !(data.len() >= MAX_HEAD && h == Head::Partial),
            "Partial past MAX_HEAD"
        );
    }
    // Every prefix, as the bytes trickle in: classifying must never panic.
    if data.len() <= 512 {
        for i in 0..data.len() {
            let _ = parse_head(&data[..i], false);
        }
    }
});
