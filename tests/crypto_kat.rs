//! Known-answer and round-trip tests for `noports::crypto` (atprotocol.md §14, noports.md §5.7).
//!
//! Key and ciphertext constants marked "at_c" are test data copied from
//! atsign-foundation/at_c `packages/atchops/tests/` (see each constant).

use noports::crypto::aead::{Aead, EphemeralSecret, Opener, Sealer};
use noports::crypto::aes_ctr::{self, CtrStream, ZERO_IV};
use noports::crypto::rsa::{HashAlgo, RsaPrivateKey, RsaPublicKey};
use noports::crypto::{b64, hash, CryptoError};

fn key32(text: &str) -> [u8; 32] {
    b64::decode(text).unwrap().try_into().unwrap()
}

fn iv16(text: &str) -> [u8; 16] {
    b64::decode(text).unwrap().try_into().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    hash::hex(bytes)
}

// ---------------------------------------------------------------------------------------------
// §14.1 AES-256-CTR with PKCS#7 (computed)

const AES_KEY_141: &str = "1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=";

#[test]
fn aes_ctr_vectors_14_1() {
    let key = key32(AES_KEY_141);
    let cases = [
        // (plaintext, iv, ciphertext)
        (
            "I like to eat pizza 123",
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "JOybRjOLcaENX5XUwf/FekHNFVb9dchpeJsUktBwOWQ=",
        ),
        (
            "I like to eat pizza 123",
            "AAECAwQFBgcICQoLDA0ODw==",
            "pkxDJTxjDsS3T2HaaAvas7U6WeVFPYiXlB8XrjC6hss=",
        ),
        (
            "0123456789abcdef",
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "Xf3FHGzbZ+JaRpHX1rvQdSunZGbcV+twYYINi8lpIH0=",
        ),
        // Vector D: the counter carries out of the low 64 bits into the high half.
        (
            "0123456789abcdef0123456789abcdef",
            "AAAAAAAAAAD//////////w==",
            "8CRFTZ9+94oIu/2H/4R4vuPeqNMTR/+ooToqEbiKTUKZJtwoEfZyz1wIDGrhavKm",
        ),
    ];
    for (plain, iv, cipher) in cases {
        let iv = iv16(iv);
        assert_eq!(aes_ctr::encrypt_b64(&key, &iv, plain), cipher, "{plain}");
        assert_eq!(
            aes_ctr::decrypt_b64(&key, &iv, cipher).as_deref(),
            Ok(plain)
        );
        let raw = b64::decode(cipher).unwrap();
        assert_eq!(aes_ctr::encrypt_padded(&key, &iv, plain.as_bytes()), raw);
        assert_eq!(
            aes_ctr::decrypt_padded(&key, &iv, &raw),
            Ok(plain.as_bytes().to_vec())
        );
    }
}

#[test]
fn aes_ctr_vector_a_padding_is_nine_bytes_of_nine() {
    // Decrypting vector A with a bare keystream exposes the PKCS#7 padding.
    let key = key32(AES_KEY_141);
    let mut data = b64::decode("JOybRjOLcaENX5XUwf/FekHNFVb9dchpeJsUktBwOWQ=").unwrap();
    CtrStream::new(&key, &ZERO_IV).apply(&mut data);
    assert_eq!(&data[..23], b"I like to eat pizza 123");
    assert_eq!(&data[23..], &[9u8; 9]);
}

#[test]
fn aes_ctr_vector_d_rejects_64_bit_counter_output() {
    // The wrong (64-bit counter) ciphertext of §14.1 must not decrypt to the plaintext.
    let key = key32(AES_KEY_141);
    let iv = iv16("AAAAAAAAAAD//////////w==");
    let wrong = "8CRFTZ9+94oIu/2H/4R4vl39xRxs22fiWkaR19a70HUrp2Rm3FfrcGGCDYvJaSB9";
    assert_ne!(
        aes_ctr::decrypt_b64(&key, &iv, wrong).as_deref(),
        Ok("0123456789abcdef0123456789abcdef")
    );
}

// ---------------------------------------------------------------------------------------------
// §14.2 AES-CTR decryption of an atKeys-style key blob (at_c test_aesctr_decrypt.c)

const AES_KEY_142: &str = "su16AzIiiGZULJYFsxDWyyy8yAJQNJvEsmVNkr2/0Vo=";
const KEY_BLOB_142: &str = "yY9vOA8bbzyADNGOxFPdT6bGxySKmNd6usP5/LBufYo4oBJt4ntFCecxESIjZuCqX5ALV8YNujt9V7s5f5QdfEuLAX7pa8apJp23BwDP7j7e3qz5NVbGocGpChdQBX8ni2aoMOrKZyMjtls8G4cCG0b7QIDSSEk1sv6fH50lToBZ/4fNSKonHZ0JvsbkE/1vg7VrcQ8tqwZJNfSfZaoP6zQpROknfjgRyYGJfy/Rao/vJRoSicH5sOcXKg+41BUa0Uc8Iqz4wJrzkI+uz7sJUIBZ3b5ZLdHXmk5z5cee3Suh58+yE2p29hcF2Dzpygx2KdT8ValH2PdB9u4B4DzTikQBKDqP9mDPPR4K/TGBvI90vsX2vZo2LSRpx2NC7aZxvx5RXdjjfFNffYCAwX2n0SKvyUBhXmYu2zdgx99MDsfwp/7LG7Noy5q/InfDb/dQdvJAGdWcsnqdHIANVen1+cQFKPk79MMcSsBQI6WAYYZAI2ctWju6y2SN5MhSOAdWehWRS8P3fv4j30KqAHKnXiNzqfTb8135u2hsDCCP6H6fdf3IKQmqVasFUs2AgUcdIVEQxOfRNu5URemIk7imJ0pGP/P47gCb2TwThObE7XCPcNfgyY51cRgKQc5vQXyqJw4gKE49QmuDIsMyoSdroYhnn/1nhfO7AxG74+3y76CHvhcqsNT5LK1Nr9ecdAeKTEqp4SvVcxxA7CJcjbjv6GuSAQovv04uxiOGjMFoWeU+CaVi0jNAYa+bE/TBpdL7Meg8EStK8p3Sb2AQc46LHVHEW7OMDT9JG2jgtL3wjjYbhm+o7W+yEkGZL5p274749LFMCeHafW5qKougjUuR3g1AUzW9TeL84J52/ZaqHPOpk0+7uhVzUhnNvKofVypyV3bGnGyqUeAx5uRbBjrFJdor+cZ6NmsnOHyVlzXHOsFItmB5STth+zSTyZ/53SZkTP9NoTiZMl3iuJAffzRXjmvouA6JstxdXYbAfGNVRz+VIvHPlqYbrS/SopijypqEZ1Hnju3y0HexsUc4xilDXvy+XaTUibAbi6hHy8QfRd1/KU6DgOVNjlOsvELjsa3f+hLE9Zu+QOrC42vpzR3BVC+rh2X5RXEn+aY5i4oejYH2HiRQo00gUfrffL79NCpfvn10NMawlWQxRiVLbJ0qi6TN4hsKr2HAzTmuh1lN+tC4VciexHfy87Bs2l8/oXCFzAT6TdpTXBaTWXzmXBy8YaQwXxMb3xNV+LaEaYy1AlDTypPZdkkIkpJkG9Tkbw4JXt7RKQ0oS/sFp2MkHKjkbJjHaFm+Fi55uMKMht3200PWwTQSHS/GupZhTIlXm86HbQHUUAbxe/Dgpup6NQ96TMgYOi3t+FG78TY7QXJMejkAHNpS57deB0EmeFhbJRCgSEc0amwjEk7AIKYbg0J+j7lYcJvB/uiUj2GSfBBU75iudTrvMJ60VnbQF055piUwlRlYc9TUf/43Oa7wszCq+oPI/Kjaho/GO4cO2mnc92sgw7wR/+hv/8Bd8/j2gSssraQgepEkjVL1HKvrxil+OuJo5hy+bM88CjB8Q04to0gkLApPbirL6w2ZlOCn2LRrGuSkajl0QgviL95GEM8zNqZscPkBiV2yVUw403G+T5+3ERtbZ1kJrgKuTSnjPTt8bFMYEdJVQ1+Z1mtnWX4AxR/j6vC2H+DSuGfOyaH1vociT+nNeDtq3axck5sf8h443Yw9jSbMVjyE+HkZWvxzyD4MjSvnEVp1Sso0/eDKFyTVRPn4dsw09+ltOm0F8CGeH/FAoXLF8CGrEoFe//Tlk8b+PbW1FVIph42cnQXpwHLrlsSAGjHmg4mWK8QXcRLjykdYpH4sX+Wd1wxHvlKAWEDBlZB1NSHkTgrprovr7xxqUCA3vRkRRD1RzG+Q6ikb0/1PmBPlOW3v8Dwr1BGuu9a7fruisMrl88LuPVXgxBpjANa4aq3nVmcZ2WMduDEgH1bWWqaciT3IkYm/97QMIQRyFTfQ5tWY9ZcsP9DKluqM222whKBsLz3sL4F9gL5L2HECz3y5EGX4J5QSrU4y4Y8HE5KNz9SqwlTdYSj87dm/e5l8mVNVR8gMFtzbd9MqNaCoNPm8GfWvx+QIctKNR3zEjxqWrMkiyezZU0PxC98eeHIkef0s1OPcDLMRiwIl";

#[test]
fn aes_ctr_key_blob_14_2() {
    let key = key32(AES_KEY_142);
    let cipher = b64::decode(KEY_BLOB_142).unwrap();
    assert_eq!(cipher.len(), 1632);

    // Raw keystream: 1624 base64 characters then 8 bytes of 0x08.
    let mut raw = cipher.clone();
    CtrStream::new(&key, &ZERO_IV).apply(&mut raw);
    assert_eq!(&raw[1624..], &[8u8; 8]);

    let text = aes_ctr::decrypt_b64(&key, &ZERO_IV, KEY_BLOB_142).unwrap();
    assert_eq!(text.len(), 1624);
    assert!(text.starts_with("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSj"));
    // ...and it is a usable PKCS#8 RSA-2048 key that re-encodes to the same text.
    let key = RsaPrivateKey::from_pkcs8_b64(&text).unwrap();
    assert_eq!(key.to_pkcs8_b64(), text);
    assert_eq!(key.public_key().to_spki_b64().len(), 392);
}

// ---------------------------------------------------------------------------------------------
// §14.3 PKAM signature (at_c test_rsasign.c) and test_rsaverify.c key pair

const SIGN_PRIVATE_KEY: &str = concat!(
    "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCy64Pzy9ZDdm6e96z3DmjektD7sKUo40Ax+",
    "1VD12Ksm3pUPTGDkM3Nf4Sp2ATcy6ZbCRHSEWtx7dPfC/H1p7yS9KOVLtAmx8aT0SNiT+WGsclshI/n/XP+jCjxrpYwf4ntgX2i6p6hlo/",
    "ZiW8i3+Ayyhw8uYuVMUyMHv70EaoTN0+N5QF9l74LkLYL7cXyfZayDPTZJxbLF2WEoQz4ZWJhgFk40EeBw03jiLg/T0hw1gbS0z97HhZs/",
    "QPtTaDR9EJYq27eZagRFZ6em7esrjjTpmGaTJmtZjEomV6o/EOtdvImRe1tViI22DWGAKi87BBGXR5Zr3xoRXPSypHLqLsNAgMBAAECggEAatzd//",
    "QEMmD/KzVU+m6B1kYsSde0nZo1kmTCBXYUenGWe8/cze7j7NQ4AVWDefiskHz3Rteeq/pXbEXvK0EXEVLKjWTbb/",
    "4sLcdg8ew0c+GmI4l9hhtMd4FxRwB2tdrHH7MSvgaR3oNVwaEjXtoGR2+Ns/",
    "tCUkaSqLIupsoSIc0Mj07Teq7SZvAe++oMyNgkyArR509oSG0GQFQp706VgLaUVrvtlMEXvtGB0pcn/y1Axz/",
    "l9VvYpojYp7MqSwVU6R4GWxjrn4JXCVQrh48VmuJS83i2oqFgbAXD2KyNjjkoW3Z26uhfJ0qgN2PeQgMYH06gNhfEYOAGTI8HgtfChQKBgQDc7xIYG",
    "0IchAX/0lds4yUXRRF9wEjZmsvaf6LZPEs97/z11cAbTp41zlppCqpGL0md/",
    "lTwFVwsmGuZNob999sGKi7A6mM2sBj+",
    "QiBoHACvl2e167O72eFYqyXtJwDH5XOA5JMHbc6GJpSeVE29UnIgq1czgp3DtapQRX3BOPMRYwKBgQDPUVjZJERK5N9ccs59gjyKiu6e60m42AVjpv",
    "aCWbqPSZXTEhGM8X9OJNsdZufRoMi6tYctXGthiB4HOoV1E5ACvJxgWpOTmbqqbBDA5pQPrJ4eRdigHjGnrAWdsJ+3smMbhk/",
    "6Ai00gmqwz8rv7eyGSY+dwOem/vPoJOrlRFFkzwKBgH+IhbJiscQSNgBZpFvXtwZ6uUEU6Tir0bccbJ3n3ysuyKAENnPM6yj2KFxwaqA/",
    "FcjdEpzQR7f6eEomHsCl/cnOOdTkuEbOWm8TLu/KEl9KD/",
    "UEzWjHufxcN3VxSVMa0ZT63SCxs0DfLnVDBukdmYHgRmMWqAlcaacSpigOvskvAoGADVikSp5OEzA2vOHbLzNCKH0XLX3iKhcmCatG9U9Hdk/",
    "7aDIilRs64dH3lSX5yIH8SiDDigUIGKhFnpuC2e2feL2hp4ZNN9ROswfv8Csn3vZy22oNrwkikzO8zNEBBzdhr/",
    "Tukx6uwFGhAq7t1pJPhrmXmEVB5HtHQmuV/",
    "5ptTvsCgYA5d5L3hO3+1Na4C6xj8luQXFhkSLNe0rwoe16OLjcyzcnhlb2KKA8rORGP28s1JcCL4Htasf0YzCkOJ/jR28GzX/",
    "0qvWu0hBSilV2mCAqwQ1fvZx0L4quJznkAhJPMZ+oag8o1LlQiJGgnhsIMbDLZApKh3NuYlTmdqo20FfkZkg==",
);

const PKAM_CHALLENGE: &str =
    "_4a160d33-0c63-4800-bee0-ee254752f8c8@jeremy_0:6c987cc1-0dde-4ba1-af56-a9677086182";

const PKAM_SIGNATURE: &str = concat!(
    "AwsKWNqRHiCtdNJ0U5GXZ1H5obptEWVR1+A1kPhot4cdLfmulvBVXRaBIrP+jd2TSP2J/KNAgv2BDLH7DXUibdTnzJaKm/",
    "QKAjpwpuShnV6Y9KSWTnomBw9x9OWDkVrBzSo5rOFpHHOTZJhp4ygStKEzZDa108g8uP5PpkfzntO2eIVEOdMHoL9/",
    "yAkuYJcz+VmCH+1AJtCdeKfhjfmlk0bP72fwsait6pA3TW0iEll9ptZmlLjNtCTi982h1yNprh+XtrjMz7ClbJChQf3LLHiJMZ+",
    "7r4yKTrehdBVfxQoNNw9r2D7TBRaY8bXYwMombMHRuu0oVbqNU1jEs60NGQ==",
);

#[test]
fn pkam_signature_14_3() {
    let key = RsaPrivateKey::from_pkcs8_b64(SIGN_PRIVATE_KEY).unwrap();
    let sig = key
        .sign(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes())
        .unwrap();
    assert_eq!(sig.len(), 256);
    assert_eq!(b64::encode(&sig), PKAM_SIGNATURE);

    let public = key.public_key();
    assert!(public.verify(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes(), &sig));
    // Wrong hash, wrong message, flipped bit, truncated signature: all false, none panic.
    assert!(!public.verify(HashAlgo::Sha512, PKAM_CHALLENGE.as_bytes(), &sig));
    assert!(!public.verify(HashAlgo::Sha256, b"another challenge", &sig));
    let mut flipped = sig.clone();
    flipped[100] ^= 1;
    assert!(!public.verify(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes(), &flipped));
    assert!(!public.verify(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes(), &sig[..255]));
    assert!(!public.verify(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes(), &[]));

    // SHA-512 (hashingAlgo:sha512) signs differently and verifies only as SHA-512.
    let sig512 = key
        .sign(HashAlgo::Sha512, PKAM_CHALLENGE.as_bytes())
        .unwrap();
    assert_ne!(sig512, sig);
    assert!(public.verify(HashAlgo::Sha512, PKAM_CHALLENGE.as_bytes(), &sig512));
    assert!(!public.verify(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes(), &sig512));
}

const VERIFY_PUBLIC_KEY: &str = concat!(
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuA7KmWrIPcKTH3hSzsDZ",
    "ys60kxaqKgHeTuGCwgzHSi2SkMV9iYBCd2//KagWVoUKWyuI2KOQo2WFslqFOjOs",
    "j4NqlhM3EamBqZqVFI5IUHtTNbXcea3igp4nVWoHwPHyJNiMf0I0rHSUeiuAbeR5",
    "6lYGE8b64fXzKkRyQ7YRVyrp7HtYRrmA27xGDtAKT9mr+0T+5lzsHR1YLT3capll",
    "nlUf5w8p6l8DJ4qGnODpG4/gOggEr6H5/aAVjGn8WGuRY9d7SZLJfeYG+vJ1/o/P",
    "37L5/7sc2D6kYS1Qh45EN0jUF8ILRUJRNFKZpqWDn64LKHKCwKz00NT6OANUHNdF",
    "awIDAQAB",
);

const VERIFY_PRIVATE_KEY: &str = concat!(
    "MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQC4DsqZasg9wpMf",
    "eFLOwNnKzrSTFqoqAd5O4YLCDMdKLZKQxX2JgEJ3b/8pqBZWhQpbK4jYo5CjZYWy",
    "WoU6M6yPg2qWEzcRqYGpmpUUjkhQe1M1tdx5reKCnidVagfA8fIk2Ix/QjSsdJR6",
    "K4Bt5HnqVgYTxvrh9fMqRHJDthFXKunse1hGuYDbvEYO0ApP2av7RP7mXOwdHVgt",
    "PdxqmWWeVR/nDynqXwMnioac4Okbj+A6CASvofn9oBWMafxYa5Fj13tJksl95gb6",
    "8nX+j8/fsvn/uxzYPqRhLVCHjkQ3SNQXwgtFQlE0UpmmpYOfrgsocoLArPTQ1Po4",
    "A1Qc10VrAgMBAAECggEBAJ+FMlKFGcdtO9WqkxpeSmRbgmV430JJHEOBb7J/ILpJ",
    "hR20DHl/kBu0FZIk/DdAVxltQc2A9XqoIpfRnGY1Ivm/DEHFpZTJNHeqYkrOhh46",
    "xINoew16hzZtm+mLW+z9xL/qbtpcpwpQf97ilQypWICgzeOWMRpl77pSWDYXNjA0",
    "qQP/Y6A2ocAYBVkBz/SGtpWBRKb/CouzvDUqiDAa0EEKTu/Ywa9yz2GGd+eUxk2F",
    "sM20zTmZfUipaIWkrS0bOevAcUvcVaX9Ydq1vKXa34+oZcNQqW/sS4+B+RM3ogl8",
    "Lg2PCLYQG7azSSFHCJPwG5u7RyMWjLXwPrVkT1Nj3wECgYEA2guA5gMp7LAtmH1k",
    "PFOz2kENveBYW1o/xzgvaBlLCZUubQCE55zlbyAMQUtEuzkyz8dT6SDLkllsDASt",
    "30et9g8rDqa2//gK3O/mfSsx64pOqRXgr0Fb1OmHP0ESGoj3xt4pS8wENtUiwfeA",
    "U2j+NPU4t9Y1iqslVsBJVIImLpcCgYEA2BjBcWZ9QNmFbE0rlX3+G3GQH4amc5RJ",
    "2AUt6EyIexAZNr+1cpTGKswePw3EWwQz0sbC/Fci4qfsR5+d4rfcJp75mSV3HHEl",
    "Z6m7iH50zKIVePSRrlgMzOPmpEoo2VelLFVx/sP70s4sPNZyKQZngn78MgtcOqQK",
    "jTtIU96JDk0CgYEAiLLTkeCD5Tair0pVkBit1fQY6GSBIGyZNY288teAmrZjT8UW",
    "jZpooN2HsVu98F6ww2Dk83AzEEJtoa9BTo1Cu9PQm7PbYOih7tecOfbdqhygqhLk",
    "NRuVtgreVsK11dru9EeNvk5eif3fd5lyY1icnpjqgR6TnKcllpigoJGj3GsCgYA0",
    "mHnkruxHb2oA/RthjEPfzBknAy/aK7p5YHFW++GwCjAI2kpAdCNzYTDvadtjx7cR",
    "Ux08K70q63If0KKt/tAPelwHwU2nV4aiH3asdxLYh46wXN5kT7v11nZZgE9G7wUd",
    "sEJJnsvY+CNeP1eT0qI46c1aJNey0iBbVZV6DEzRdQKBgQCPtEKSHGDom9bTErpL",
    "TJ//6ZIrUlS+5mpCIOTgA1lyTORq9Xe+qMD7FbFQNDdlNuXtBKvwu5vYJ6Ib+VIt",
    "sDFCwDRQsGFXNkdnSFZovMfmNQp+p6fuOgrnuSfLR1gI8nV3JQy8U/eZT5ABh06j",
    "3A6sUy0M7TXTd6ljRS3MRBatOA==",
);

#[test]
fn rsa_verify_key_pair() {
    let public = RsaPublicKey::from_spki_b64(VERIFY_PUBLIC_KEY).unwrap();
    assert_eq!(public.to_spki_b64(), VERIFY_PUBLIC_KEY);
    assert_eq!(VERIFY_PUBLIC_KEY.len(), 392);
    let private = RsaPrivateKey::from_pkcs8_b64(VERIFY_PRIVATE_KEY).unwrap();
    assert_eq!(private.public_key(), public);
    let sig = private
        .sign(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes())
        .unwrap();
    assert!(public.verify(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes(), &sig));
    // A signature by a different key (the §14.3 key) must not verify.
    let other = b64::decode(PKAM_SIGNATURE).unwrap();
    assert!(!public.verify(HashAlgo::Sha256, PKAM_CHALLENGE.as_bytes(), &other));
}

// ---------------------------------------------------------------------------------------------
// §14.4 RSA PKCS#1 v1.5 decryption (at_c test_rsadecrypt.c, Dart-generated key)

const DECRYPT_PRIVATE_KEY: &str = concat!(
    "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCDc/",
    "uZ5+pmDYY1A+IQdiKeZNhRxttbYCv1aLksIP+5Fk1GJAnKlsBBum+",
    "Tp8CjXCHk22nWSM8YesiKRQFVEQi1OS6Whs449U1oLkVSDzqRAnZaT5nI9oIh+u2jsa/",
    "7KfYOIqqN1h17GOZopsw73RZJnvISYLaarxtFABIPQ+",
    "gbdFfWySEaRXUW89sfg4QO7MzEd8ZwK8KLf4E9xuCMshP90p7bMAdLn98T04rVvP78W60lMXwzospBjwT6HZxCNMSfdFEmVwynivCr/",
    "QY2abeY1jkSFRxqYqJJYgsb1rydjN4hRp9eYRIJmT4nXJW71ByZc/wOiS/7gou/vr9jVGypAgMBAAECggEAFTkjlQypfoKOeX6///",
    "Ji0nnrpwBZKB6V2lBnHSXSw7pDDaEB57CBJ9uG6ir6YiWc30tBgjRNI2GngRN1DJvscP3jdLAdGXsZXUmjLYWB6imgnCIf7R9HkV7nATfN9tomfM/",
    "CA5ZfOiGiCaFsdfnTAF3mLWtp7/",
    "13hKNnRwmqrsvUzJrqzNFqZty7YRtkm2pxxetsycq2WGKkOjwEyJdDZSI5XbQyAzuu878WEi+Th4EI2MV21jAuP7WEAZC/",
    "tBSLLFSZgiHnMaMnQ9ogWnxCbdIJfWPBiK54kcDRN2o/I7iXAVD5W3oadEYgEn6SBuG4ZQtqTM8cFSofxrGuVfyQgQKBgQDZnwC501pza1Jm4/H/",
    "lvB67kup9EFwQFbCTjJKuHd1NuV1O0LcHER5wfgLOac2My7kXva8gsheLHdi9ciPNtqhHrJVpl4QyXYd6h7m3FImGCfd1xwqrfWPPA0aMM8e8QZGAN",
    "rX7Z20xzEzSgMu/",
    "0trg7WS4P7ChO2VHXviEn4mMQKBgQCaorqBjvajf9wkwh5V06HmpaI8Ji7JvRD44l1G0eGJgCrSYbvFUQr4KzfaQltfwaMJnqoNVrqey9yhPaFacjI",
    "2QbBM3zECjmasy9m20VS70QsV7XKq7tKco8M+YfUwzOFOKrpxUm/",
    "AG7SoTmTIwsg+VkZNTPWQB74kwKmRkkj3+QKBgGxnXi8y702rWmLSjYvqHmS+K4a/",
    "m5FVG2KzHS5HcYo8DFU3bfjDRAD69Jpy366KFIPCIlqJM1JmCBqNoJhmlMXJysALnbPzBxmjtDz/5xP+2G0TaH6CJV5yZXx0b9hT6/",
    "IXHuyM+xBAYWvRJIDWvzURaPN/jKhNGyQ6ial12M0hAoGAdFadbr+6O0QEwfrxi6zPD5HpvssTRF/",
    "kFvtnJdLdle9BSEqTVF4mnJMXUDPAPwiVurUORz7K5JGHih+t9zgXIs7E7vC0FLJB+",
    "RrczzgqQauCZZrhPEy1U3e5eoOETpS1pXNsFbnprWSqxD1GgexZbtzFw350+Ul5+",
    "nigmo6uKzECgYBuZVdUFt0XpIWZ8hugSMhCxHhNZMrOAIbQp0eXMs3U25zd8RpUx4qXK39Sp+X6Ifs8jCfSjThhI5Ip0L0/",
    "vz5IyBrTUwbaCJVmLZU69UHNm2g8I6FoMQx3w7/ILo2mlfhd9QwTEzyT9dsdXq23HJeMkWzoVLieTHySu20n+PxXbQ==",
);

const BANANA_CIPHERTEXT: &str = concat!(
    "QVZmFo7iE0qr8QbF9pwBM9/AwPezOe+zzzSl2J/CKkyjwc8RsU4MCi5Mr/",
    "L09S+t8j3a092pax6OglKeS49xGlfmBWoFoCStb98T+",
    "ifwlYFnnKiSehDqUh3tvtMDgmmiUVxbCKR5CTsQYndGVeQaKhCLzl2Pv5OOutP9Uon2C42NQK3nOlEV7vMIlzY/",
    "HyiSWU+0sUkWLG01lChjI4m8cdfLjM/c+vxJe8qOFJKewtAuTdg63Q0tR0qZ/O7EHJ1JMKdc/fPFpKz8whZAevhx3UIIzilI7xBluMYKEi4jDH/",
    "p4UARTc1LALGE/7eQ5mVdPsdPU/h4Jd5jWbkXWOA1nA==",
);

#[test]
fn rsa_decrypt_banana_14_4() {
    let key = RsaPrivateKey::from_pkcs8_b64(DECRYPT_PRIVATE_KEY).unwrap();
    let cipher = b64::decode(BANANA_CIPHERTEXT).unwrap();
    assert_eq!(cipher.len(), 256);
    assert_eq!(key.decrypt(&cipher), Ok(b"banana".to_vec()));

    // Wrong key, truncated and modified ciphertexts are errors, never panics.
    let other = RsaPrivateKey::from_pkcs8_b64(SIGN_PRIVATE_KEY).unwrap();
    assert_eq!(other.decrypt(&cipher), Err(CryptoError::Decrypt("rsa")));
    assert_eq!(
        key.decrypt(&cipher[..255]),
        Err(CryptoError::Decrypt("rsa"))
    );
    assert_eq!(key.decrypt(&[]), Err(CryptoError::Decrypt("rsa")));
    assert!(key.decrypt(&[0xffu8; 256]).is_err());
    let mut modified = cipher.clone();
    modified[0] ^= 0x40;
    assert_ne!(key.decrypt(&modified), Ok(b"banana".to_vec()));
}

// ---------------------------------------------------------------------------------------------
// §14.5 CRAM digest, §14.6 MD5 helper

#[test]
fn cram_digest_14_5() {
    let challenge =
        "_4a160d33-0c63-4800-bee0-ee254752f8c8@alice:6c987cc1-0dde-4ba1-af56-a96770861820";
    let digest = hash::sha512_hex(format!("abc123{challenge}").as_bytes());
    assert_eq!(
        format!("cram:{digest}"),
        "cram:bbc14766276bf111ab82d557d5abfa65dcd115b38f7653915d5be463df588f2943627c6a4c1e1ce758708f1c47954da35a133ba1a348426ded1d4a2badb7b806"
    );
}

#[test]
fn md5_hex_known_answers() {
    // RFC 1321 appendix A.5. (The §14.6 pubKeyCS vector needs the atKeys fixture; tested there.)
    assert_eq!(hash::md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(hash::md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        hash::md5_hex(b"message digest"),
        "f96b697d7cb7938d525a2f31aaf161d0"
    );
}

// ---------------------------------------------------------------------------------------------
// noports.md §5.7 data-plane keystream

#[test]
fn ctr_stream_5_7() {
    let key = key32("1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=");
    let iv = iv16("MTIzNDU2Nzg5MEFCQ0RFRg==");
    assert_eq!(&iv, b"1234567890ABCDEF");
    let expected = "f79020f51385b6a0c2d7371d058d93c1ac7b02624df784e5af5b";

    let mut one = *b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    CtrStream::new(&key, &iv).apply(&mut one);
    assert_eq!(hex(&one), expected);

    let mut split = *b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut stream = CtrStream::new(&key, &iv);
    let (head, tail) = split.split_at_mut(5);
    stream.apply(head);
    stream.apply(tail);
    assert_eq!(hex(&split), expected);

    // The other direction starts at offset 0 with the same key and IV and so decrypts.
    CtrStream::new(&key, &iv).apply(&mut split);
    assert_eq!(&split, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ");
}

// ---------------------------------------------------------------------------------------------
// Rejections of malformed input

#[test]
fn padding_rejects_bad_inputs() {
    let key = key32(AES_KEY_141);
    let bad = Err(CryptoError::Decrypt("padding"));
    // Wrong lengths.
    for len in [0usize, 1, 15, 17, 31] {
        assert_eq!(
            aes_ctr::decrypt_padded(&key, &ZERO_IV, &vec![0u8; len]),
            bad,
            "len {len}"
        );
    }
    // Craft plaintext blocks with bad padding by encrypting them with the bare keystream
    // (CTR is an XOR, so `apply` on the plaintext yields its ciphertext).
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let mut zero_pad = vec![b'x'; 16];
    zero_pad[15] = 0; // pad byte 0
    cases.push(zero_pad);
    let mut too_big = vec![b'x'; 16];
    too_big[15] = 17; // pad byte > 16
    cases.push(too_big);
    let mut uneven = vec![b'x'; 16];
    uneven[13] = 3;
    uneven[14] = 4; // last byte claims three 0x03 bytes, the middle one differs
    uneven[15] = 3;
    cases.push(uneven);
    cases.push(vec![0x20u8; 32]); // pad byte 32: consistent, but more than one block

    for plain in cases {
        let mut cipher = plain.clone();
        CtrStream::new(&key, &ZERO_IV).apply(&mut cipher);
        assert_eq!(
            aes_ctr::decrypt_padded(&key, &ZERO_IV, &cipher),
            bad,
            "{plain:?}"
        );
    }
    // A wrong key never yields the plaintext (usually it is a padding error).
    let wrong = key32(AES_KEY_142);
    assert_ne!(
        aes_ctr::decrypt_b64(
            &wrong,
            &ZERO_IV,
            "JOybRjOLcaENX5XUwf/FekHNFVb9dchpeJsUktBwOWQ="
        )
        .as_deref(),
        Ok("I like to eat pizza 123")
    );
    // Not base64 / not UTF-8.
    assert_eq!(
        aes_ctr::decrypt_b64(&key, &ZERO_IV, "%%%%"),
        Err(CryptoError::Base64)
    );
    let non_utf8 = b64::encode(&aes_ctr::encrypt_padded(&key, &ZERO_IV, &[0xff, 0xfe]));
    assert_eq!(
        aes_ctr::decrypt_b64(&key, &ZERO_IV, &non_utf8),
        Err(CryptoError::Decrypt("utf-8"))
    );
}

#[test]
fn base64_rejects_garbage() {
    for bad in [
        "QUJD\n", "QUJ", "QUJD=", "QQ", "QR==", "Q===", "QU JD", "QUJD\r\n", "-_-_", "QUJD!",
        "====", "é",
    ] {
        assert_eq!(b64::decode(bad), Err(CryptoError::Base64), "{bad:?}");
    }
    assert_eq!(b64::decode(""), Ok(Vec::new()));
    assert_eq!(b64::decode("QUJD"), Ok(b"ABC".to_vec()));
    assert_eq!(b64::encode(b"\xfb\xff"), "+/8=");
}

#[test]
fn rsa_rejects_bad_keys() {
    // Ed25519 keys from RFC 8410 §10.1/§10.3: well-formed, but not RSA.
    let ed_spki = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
    let ed_pkcs8 = "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC";
    assert!(matches!(
        RsaPublicKey::from_spki_b64(ed_spki),
        Err(CryptoError::BadKey(_))
    ));
    assert!(matches!(
        RsaPrivateKey::from_pkcs8_b64(ed_pkcs8),
        Err(CryptoError::BadKey(_))
    ));

    // Private key text where a public key is expected, and vice versa.
    assert!(matches!(
        RsaPublicKey::from_spki_b64(VERIFY_PRIVATE_KEY),
        Err(CryptoError::BadKey(_))
    ));
    assert!(matches!(
        RsaPrivateKey::from_pkcs8_b64(VERIFY_PUBLIC_KEY),
        Err(CryptoError::BadKey(_))
    ));

    // Truncated / trailing data / whitespace.
    let der = b64::decode(VERIFY_PUBLIC_KEY).unwrap();
    let truncated = b64::encode(&der[..der.len() - 1]);
    assert!(matches!(
        RsaPublicKey::from_spki_b64(&truncated),
        Err(CryptoError::BadKey(_))
    ));
    let mut extended = der.clone();
    extended.push(0);
    assert!(matches!(
        RsaPublicKey::from_spki_b64(&b64::encode(&extended)),
        Err(CryptoError::BadKey(_))
    ));
    assert_eq!(
        RsaPublicKey::from_spki_b64(&format!("{VERIFY_PUBLIC_KEY}\n")).err(),
        Some(CryptoError::Base64)
    );

    // RSA-1024 is refused (generated with the rsa crate directly; 1024-bit keygen is quick).
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let small = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap();
    let small_pkcs8 = b64::encode(small.to_pkcs8_der().unwrap().as_bytes());
    let small_spki = b64::encode(
        small
            .to_public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    );
    assert!(matches!(
        RsaPrivateKey::from_pkcs8_b64(&small_pkcs8),
        Err(CryptoError::BadKey(_))
    ));
    assert!(matches!(
        RsaPublicKey::from_spki_b64(&small_spki),
        Err(CryptoError::BadKey(_))
    ));
}

#[test]
fn rsa_reads_pkcs1_private_keys() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let inner =
        rsa::RsaPrivateKey::from_pkcs8_der(&b64::decode(VERIFY_PRIVATE_KEY).unwrap()).unwrap();
    let pkcs1 = b64::encode(inner.to_pkcs1_der().unwrap().as_bytes());
    let key = RsaPrivateKey::from_pkcs8_b64(&pkcs1).unwrap();
    // Written back as PKCS#8, never PKCS#1.
    assert_eq!(key.to_pkcs8_b64(), VERIFY_PRIVATE_KEY);
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn rsa_generate_many_gives_distinct_2048_bit_keys_with_e_65537() {
    let keys = RsaPrivateKey::generate_many(3).unwrap();
    assert_eq!(keys.len(), 3);
    let mut spkis: Vec<String> = Vec::new();
    for key in &keys {
        let public = key.public_key();
        assert_eq!(public.bits(), 2048);
        let spki = public.to_spki_b64();
        // The DER ends with the public exponent: INTEGER 01 00 01.
        assert!(b64::decode(&spki)
            .unwrap()
            .ends_with(&[0x02, 0x03, 0x01, 0x00, 0x01]));
        assert!(!spkis.contains(&spki), "two identical keys");
        spkis.push(spki);
        let sig = key.sign(HashAlgo::Sha256, b"x").unwrap();
        assert!(public.verify(HashAlgo::Sha256, b"x", &sig));
        let wrapped = public.encrypt(b"secret").unwrap();
        assert_eq!(key.decrypt(&wrapped), Ok(b"secret".to_vec()));
    }
}

#[test]
fn rsa_generate_round_trip() {
    let key = RsaPrivateKey::generate().unwrap();

    let spki = key.public_key().to_spki_b64();
    assert_eq!(spki.len(), 392);
    assert!(spki.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"));
    let pkcs8 = key.to_pkcs8_b64();
    // An outer SEQUENCE with a two-byte length that covers exactly the rest of the DER. The
    // length itself varies (see below), so the Base64 prefix is not fixed past "MIIE".
    let der = b64::decode(&pkcs8).unwrap();
    assert_eq!(&der[..2], &[0x30, 0x82], "{}", &pkcs8[..10]);
    assert_eq!(
        usize::from(der[2]) << 8 | usize::from(der[3]),
        der.len() - 4
    );
    // DER drops leading zero bytes, so a component whose top byte happens to be small (about
    // 1 in 256 each) makes the encoding a byte shorter: the exact length varies between keys.
    assert!((1600..=1632).contains(&pkcs8.len()), "{}", pkcs8.len());

    let public = RsaPublicKey::from_spki_b64(&spki).unwrap();
    let private = RsaPrivateKey::from_pkcs8_b64(&pkcs8).unwrap();
    assert_eq!(public, key.public_key());
    assert_eq!(private.to_pkcs8_b64(), pkcs8);
    assert_eq!(private.public_key(), public);
    assert_eq!(format!("{private:?}"), "RsaPrivateKey(***)");

    for algo in [HashAlgo::Sha256, HashAlgo::Sha512] {
        let sig = private.sign(algo, b"payload").unwrap();
        assert_eq!(sig, key.sign(algo, b"payload").unwrap(), "deterministic");
        assert!(public.verify(algo, b"payload", &sig));
        assert!(!public.verify(algo, b"payload!", &sig));
    }

    // Wrap an AES key the atProtocol way: RSA-encrypt its base64 text (atprotocol.md §9.2).
    let aes_key_b64 = b64::encode(&noports::crypto::random::bytes::<32>());
    let wrapped = public.encrypt(aes_key_b64.as_bytes()).unwrap();
    assert_eq!(wrapped.len(), 256);
    assert_ne!(
        wrapped,
        public.encrypt(aes_key_b64.as_bytes()).unwrap(),
        "random padding"
    );
    assert_eq!(key.decrypt(&wrapped), Ok(aes_key_b64.into_bytes()));
    // 245 bytes fit, 246 do not.
    assert!(public.encrypt(&[7u8; 245]).is_ok());
    assert!(matches!(
        public.encrypt(&[7u8; 246]),
        Err(CryptoError::Length(_))
    ));
}

#[test]
fn aead_round_trip_and_tampering() {
    let alice = EphemeralSecret::generate().unwrap();
    let bob = EphemeralSecret::generate().unwrap();
    let (alice_pub, bob_pub) = (alice.public_bytes(), bob.public_bytes());
    assert_ne!(alice_pub, bob_pub);
    let shared_a = alice.agree(&bob_pub).unwrap();
    let shared_b = bob.agree(&alice_pub).unwrap();
    assert_eq!(shared_a, shared_b);

    let mut key = [0u8; 32];
    hash::hkdf_sha256(b"salt", &shared_a, b"a->b", &mut key).unwrap();
    let mut sealer = Sealer::new(Aead::ChaCha20Poly1305, key);
    let mut opener = Opener::new(Aead::ChaCha20Poly1305, key);

    let mut records = Vec::new();
    for (i, msg) in [&b"hello"[..], b"", &[0xaa; 1000][..]]
        .into_iter()
        .enumerate()
    {
        let mut buf = msg.to_vec();
        sealer.seal(b"hdr", &mut buf).unwrap();
        assert_eq!(buf.len(), msg.len() + 16);
        assert_eq!(sealer.counter(), i as u64 + 1);
        records.push((msg.to_vec(), buf));
    }
    // Same plaintext at a different counter gives a different record.
    let mut again = b"hello".to_vec();
    Sealer::new(Aead::ChaCha20Poly1305, key)
        .seal(b"hdr", &mut again)
        .unwrap();
    let mut later = b"hello".to_vec();
    sealer.seal(b"hdr", &mut later).unwrap();
    assert_ne!(again, later);

    // Tampering with the first record: flipped ciphertext bit, flipped tag bit, wrong aad,
    // truncation, and a wrong key are all `Tampered` and do not advance the opener.
    let (plain0, rec0) = &records[0];
    let mut t = rec0.clone();
    t[0] ^= 1;
    assert_eq!(opener.open(b"hdr", &mut t), Err(CryptoError::Tampered));
    let mut t = rec0.clone();
    *t.last_mut().unwrap() ^= 0x80;
    assert_eq!(opener.open(b"hdr", &mut t), Err(CryptoError::Tampered));
    assert_eq!(
        opener.open(b"HDR", &mut rec0.clone()),
        Err(CryptoError::Tampered)
    );
    assert_eq!(
        opener.open(b"hdr", &mut rec0[..rec0.len() - 1].to_vec()),
        Err(CryptoError::Tampered)
    );
    assert_eq!(
        Opener::new(Aead::ChaCha20Poly1305, [0u8; 32]).open(b"hdr", &mut rec0.clone()),
        Err(CryptoError::Tampered)
    );
    // Reordering: record 1 presented first fails (its nonce is counter 1).
    assert_eq!(
        opener.open(b"hdr", &mut records[1].1.clone()),
        Err(CryptoError::Tampered)
    );

    // In order, everything opens.
    for (plain, rec) in &records {
        let mut buf = rec.clone();
        opener.open(b"hdr", &mut buf).unwrap();
        assert_eq!(&buf, plain);
    }
    // Replaying record 0 now fails.
    assert_eq!(
        opener.open(b"hdr", &mut rec0.clone()),
        Err(CryptoError::Tampered)
    );
    assert_eq!(plain0, b"hello");
}

#[test]
fn aead_rejects_low_order_peer() {
    assert!(matches!(
        EphemeralSecret::generate().unwrap().agree(&[0u8; 32]),
        Err(CryptoError::BadKey(_))
    ));
}
