//! Fuzzes the `.atKeys` file reader (JSON, base64, AES-CTR under the self-encryption key,
//! SPKI/PKCS#8 RSA keys): a damaged or hostile file must give an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noports::at::keys::AtKeys;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = AtKeys::parse(text);
    }
});
