use super::*;

fn sample() -> StateRecord {
    let app = AppRecord {
        app: Key([2; 32]),
        grant: GrantRecord {
            policy: r#"{"perms":"sign_event:1","expires_at":1900000000}"#.into(),
            owner_full: false,
            used: 3,
            rate_log: vec![10, 11, 12],
        },
        source: "bunker-url".into(),
        since: 9,
        last: Some((12, "sign_event".into())),
        claims: Some(r#"{"name":"An app"}"#.into()),
        added: vec!["wss://app.example".into()],
    };
    StateRecord {
        format: RECORD_FORMAT,
        written_at: 100,
        keys: vec![
            KeyRecord {
                secret: SecretBytes(Zeroizing::new([7; 32])),
                relays: vec!["wss://relay.example".into()],
                life: LifeRecord::Owned {
                    imported: 1,
                    last_used: 12,
                },
                apps: vec![app],
                secrets: vec![PendingRecord {
                    secret: SecretString(Zeroizing::new("s3cr3t-bunker".into())),
                    until: 200,
                    policy: r#"{"perms":"full"}"#.into(),
                }],
                relay_changes: vec![5],
                nsec_app: vec![NsecAppRecord {
                    app: Key([3; 32]),
                    updated: 1000,
                    perms_updated: 2000,
                    deleted: false,
                    owner_at: 0,
                }],
                owner_at: vec![(Key([2; 32]), 9)],
                owner_floor: 4,
                nsec_floor: 5,
                ended_secrets: vec![(0xdead_beef, "spent".into())],
            },
            KeyRecord {
                secret: SecretBytes(Zeroizing::new([8; 32])),
                relays: vec![],
                life: LifeRecord::Test { expires_at: 300 },
                apps: vec![],
                secrets: vec![],
                relay_changes: vec![],
                nsec_app: vec![],
                owner_at: vec![],
                owner_floor: 0,
                nsec_floor: 0,
                ended_secrets: vec![],
            },
        ],
        log: vec![LogRecord {
            key: Key([9; 32]),
            seq: 41,
            time: 12,
            count: 2,
            app: Key([2; 32]),
            method: "sign_event".into(),
            kind: Some(1),
            refusal: Some(RefusalRecord {
                code: "expired".into(),
                values: vec![11],
            }),
        }],
        next_log_seq: 42,
        reset_at: Some(99),
    }
}

#[test]
fn a_record_round_trips_and_never_prints_a_secret() {
    let record = sample();
    let cbor = record.to_cbor().unwrap();
    assert_eq!(StateRecord::from_cbor(&cbor).unwrap(), record);
    let shown = format!("{record:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(!shown.contains("7, 7, 7"), "{shown}");
    // Byte strings, not arrays of numbers: a key costs its 32 bytes.
    let mut secret = vec![0x58, 0x20];
    secret.extend([7; 32]);
    assert!(cbor.windows(34).any(|w| w == secret));
}

#[test]
fn a_newer_format_or_a_broken_record_is_refused() {
    let mut record = sample();
    record.format = RECORD_FORMAT + 1;
    let cbor = record.to_cbor().unwrap();
    assert!(matches!(
        StateRecord::from_cbor(&cbor),
        Err(Error::Unsupported { .. })
    ));
    let cbor = sample().to_cbor().unwrap();
    for n in [0, 1, cbor.len() / 2, cbor.len() - 1] {
        assert!(StateRecord::from_cbor(&cbor[..n]).is_err(), "{n}");
    }
    // A key of 31 bytes.
    let mut value: ciborium::Value = ciborium::from_reader(&cbor[..]).unwrap();
    let keys = value.as_map_mut().unwrap();
    let (_, list) = keys
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some("keys"))
        .unwrap();
    let first = &mut list.as_array_mut().unwrap()[0];
    let (_, secret) = first
        .as_map_mut()
        .unwrap()
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some("secret"))
        .unwrap();
    *secret = ciborium::Value::Bytes(vec![7; 31]);
    let mut broken = Vec::new();
    ciborium::into_writer(&value, &mut broken).unwrap();
    assert!(StateRecord::from_cbor(&broken).is_err());
}

#[test]
fn a_record_that_outgrows_the_first_buffer_round_trips() {
    // Many keys: the erasing writer grows many times over and must keep
    // every byte (that each old buffer is erased is Zeroizing's to do).
    let mut record = sample();
    let one = record.keys[0].clone();
    record.keys = vec![one; 500];
    let cbor = record.to_cbor().unwrap();
    assert!(cbor.len() > 100_000);
    assert_eq!(StateRecord::from_cbor(&cbor).unwrap().keys.len(), 500);
}
