use super::*;

fn header(key: &StateKey) -> ChunkHeader {
    ChunkHeader {
        identity: StateIdentity::new(nostr::Keys::generate().public_key(), "main").unwrap(),
        epoch: 3,
        version: 41,
        policy: [7; 32],
        key_id: key.id(),
        index: 1,
        count: 2,
    }
}

#[test]
fn a_chunk_opens_only_as_what_it_was_sealed_as() {
    let key = StateKey::generate().unwrap();
    let h = header(&key);
    let sealed = SealedChunk::seal(&key, h.clone(), b"the state").unwrap();
    assert!(!sealed.bytes.windows(9).any(|w| w == b"the state"));
    let parsed = SealedChunk::parse(sealed.bytes.clone()).unwrap();
    assert_eq!(parsed.header, h);
    assert_eq!(parsed.open(&key, &h).unwrap().as_slice(), b"the state");

    let other_launcher = StateIdentity::new(nostr::Keys::generate().public_key(), "main").unwrap();
    let other_name = StateIdentity::new(*h.identity.launcher(), "other").unwrap();
    let cases: Vec<(&str, ChunkHeader)> = vec![
        (
            "launcher",
            ChunkHeader {
                identity: other_launcher,
                ..h.clone()
            },
        ),
        (
            "name",
            ChunkHeader {
                identity: other_name,
                ..h.clone()
            },
        ),
        (
            "epoch",
            ChunkHeader {
                epoch: 4,
                ..h.clone()
            },
        ),
        (
            "version",
            ChunkHeader {
                version: 40,
                ..h.clone()
            },
        ),
        (
            "policy",
            ChunkHeader {
                policy: [8; 32],
                ..h.clone()
            },
        ),
        (
            "index",
            ChunkHeader {
                index: 0,
                ..h.clone()
            },
        ),
        (
            "count",
            ChunkHeader {
                count: 3,
                ..h.clone()
            },
        ),
    ];
    for (what, expected) in cases {
        let err = parsed.open(&key, &expected).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{what}: {err:?}");
    }
    let other_key = StateKey::generate().unwrap();
    assert!(parsed.open(&other_key, &h).is_err());
}

#[test]
fn a_chunk_whose_header_was_rewritten_does_not_open() {
    let key = StateKey::generate().unwrap();
    let h = header(&key);
    let sealed = SealedChunk::seal(&key, h.clone(), b"the state").unwrap();
    // A host that rewrites the version field, to pass an old chunk off as
    // a newer one, and asks for it as that version.
    let mut bytes = sealed.bytes.clone();
    let at = MAGIC.len() + 32 + 8;
    bytes[at..at + 8].copy_from_slice(&42u64.to_be_bytes());
    let forged = SealedChunk::parse(bytes).unwrap();
    let claimed = ChunkHeader {
        version: 42,
        ..h.clone()
    };
    assert_eq!(forged.header, claimed);
    assert_eq!(
        forged.open(&key, &claimed).unwrap_err(),
        Error::BadSignature("sealed state chunk")
    );
    // Every flipped bit of the ciphertext, nonce or header is refused.
    for i in 0..sealed.bytes.len() {
        let mut bytes = sealed.bytes.clone();
        bytes[i] ^= 1;
        if let Ok(chunk) = SealedChunk::parse(bytes) {
            assert!(chunk.open(&key, &h).is_err(), "byte {i}");
        }
    }
}

#[test]
fn sizes_and_fields_are_checked_before_anything_else() {
    let key = StateKey::generate().unwrap();
    let h = header(&key);
    assert!(matches!(
        SealedChunk::seal(&key, h.clone(), &vec![0; CHUNK_PLAINTEXT + 1]),
        Err(Error::TooLarge { .. })
    ));
    let full = SealedChunk::seal(&key, h.clone(), &vec![0; CHUNK_PLAINTEXT]).unwrap();
    assert!(full.bytes.len() <= MAX_SEALED_CHUNK);
    assert!(matches!(
        SealedChunk::parse(vec![0; MAX_SEALED_CHUNK + 1]),
        Err(Error::TooLarge { .. })
    ));
    for bad in [
        ChunkHeader {
            index: 2,
            ..h.clone()
        },
        ChunkHeader {
            count: 0,
            index: 0,
            ..h.clone()
        },
        ChunkHeader {
            count: MAX_CHUNKS + 1,
            ..h.clone()
        },
        ChunkHeader {
            key_id: KeyId([0; 16]),
            ..h.clone()
        },
    ] {
        assert!(SealedChunk::seal(&key, bad, b"x").is_err());
    }
    // Every prefix of a real chunk is refused without a panic: by parse
    // while it is shorter than a header, a nonce and a tag, then by open.
    for n in 0..full.bytes.len().min(300) {
        if let Ok(chunk) = SealedChunk::parse(full.bytes[..n].to_vec()) {
            assert!(n >= 125 + 12 + 16, "{n}");
            assert!(chunk.open(&key, &h).is_err(), "{n}");
        }
    }
    assert!(matches!(
        SealedChunk::parse(b"enclaved-state/2".to_vec()),
        Err(Error::Unsupported { .. })
    ));
}
