//! The tuple layer against FoundationDB's spec examples, and properties: order preserved,
//! round trips, canonical decoding, garbage refused without panics.

use std::cmp::Ordering;

use proptest::prelude::*;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// The test cases of `design/tuple.md` (FoundationDB), plus integer and float boundaries as
/// FoundationDB's bindings encode them.
#[test]
fn encodings_match_foundationdb_byte_for_byte() {
    use Element::*;
    let cases: Vec<(Vec<Element>, &str)> = vec![
        (
            vec![Bytes(b"foo\x00bar".to_vec())],
            "01 66 6f 6f 00 ff 62 61 72 00",
        ),
        (
            vec![String("F\u{d4}O\u{0}bar".into())],
            "02 46 c3 94 4f 00 ff 62 61 72 00",
        ),
        (
            vec![Nested(vec![
                Bytes(b"foo\x00bar".to_vec()),
                Null,
                Nested(vec![]),
            ])],
            "05 01 66 6f 6f 00 ff 62 61 72 00 00 ff 05 00 00",
        ),
        (vec![Int(-5_551_212)], "11 ab 4b 93"),
        (vec![Float(-42.0)], "20 3d d7 ff ff"),
        (vec![Int(-1)], "13 fe"),
        (vec![Nested(vec![])], "05 00"),
        (vec![Nested(vec![Null])], "05 00 ff 00"),
        (vec![Null], "00"),
        (vec![Bool(false), Bool(true)], "26 27"),
        (vec![Int(0)], "14"),
        (vec![Int(1)], "15 01"),
        (vec![Int(255)], "15 ff"),
        (vec![Int(256)], "16 01 00"),
        (vec![Int(-255)], "13 00"),
        (vec![Int(-256)], "12 fe ff"),
        (
            vec![Int(i128::from(u64::MAX))],
            "1c ff ff ff ff ff ff ff ff",
        ),
        (
            vec![Int(-i128::from(u64::MAX))],
            "0c 00 00 00 00 00 00 00 00",
        ),
        (vec![Double(1.0)], "21 bf f0 00 00 00 00 00 00"),
        (vec![Double(-1.0)], "21 40 0f ff ff ff ff ff ff"),
        (
            vec![Uuid([0xab; 16])],
            "30 ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab",
        ),
        (
            vec![Versionstamp(super::Versionstamp {
                transaction: [0, 0, 0, 0, 0, 0, 0, 7, 0, 1],
                user: 3,
            })],
            "33 00 00 00 00 00 00 00 07 00 01 00 03",
        ),
        (
            vec![String("hi".into()), String("there".into())],
            "02 68 69 00 02 74 68 65 72 65 00",
        ),
    ];
    for (tuple, want) in cases {
        let packed = pack(&tuple).unwrap();
        assert_eq!(packed, hex(want), "{tuple:?}");
        assert_eq!(
            pack(&unpack(&packed).unwrap()).unwrap(),
            packed,
            "{tuple:?}"
        );
    }
}

#[test]
fn integers_beyond_eight_bytes_are_refused_not_wrapped() {
    let too_big = i128::from(u64::MAX) + 1;
    for n in [too_big, -too_big] {
        let err = pack(&[Element::Int(n)]).unwrap_err();
        assert!(err.to_string().contains("8-byte"), "{err}");
    }
}

#[test]
fn malformed_and_non_canonical_bytes_are_refused_with_the_offset() {
    for (bytes, what) in [
        ("01 61", "terminating"),
        ("02 ff 00", "UTF-8"),
        ("05 01 61 00", "end"),
        ("15", "cut short"),
        ("16 00 01", "shortest"),
        ("15 00", "shortest"),
        ("13 ff", "shortest"),
        ("21 00", "cut short"),
        ("0b 01", "0x0b"),
        ("1d 01", "0x1d"),
        ("14 ff", "0xff"),
        ("05 00 ff", "end"),
    ] {
        let err = unpack(&hex(bytes)).unwrap_err();
        assert!(
            err.to_string().contains(what) && err.to_string().contains("offset"),
            "{bytes}: {err}"
        );
    }
}

#[test]
fn subspaces_prefix_keys_and_cover_their_tuples() {
    let users = Subspace::new(&["users".into()]).unwrap();
    assert_eq!(users.bytes(), hex("02 75 73 65 72 73 00"));
    let ada = users.pack(&[Element::Int(7), "ada".into()]).unwrap();
    assert!(users.contains(&ada));
    assert_eq!(
        users.unpack(&ada).unwrap(),
        vec![Element::Int(7), "ada".into()]
    );
    let (begin, end) = users.range();
    assert!(begin.as_slice() < ada.as_slice() && ada.as_slice() < end.as_slice());
    let other = Subspace::new(&["usersx".into()]).unwrap();
    let stranger = other.pack(&[Element::Int(1)]).unwrap();
    assert!(stranger.as_slice() >= end.as_slice() || stranger.as_slice() < begin.as_slice());
    assert!(users.unpack(&stranger).is_err());
    let nested = users.subspace(&[Element::Int(7)]).unwrap();
    assert_eq!(nested.pack(&["ada".into()]).unwrap(), ada);
    assert_eq!(
        Subspace::from_bytes(b"\x01".to_vec()).range().0,
        b"\x01\x00"
    );
}

#[test]
fn pack_with_versionstamp_appends_the_placeholder_offset() {
    let prefix = b"log/";
    let stamp = Versionstamp::incomplete(7);
    let packed =
        pack_with_versionstamp(prefix, &["ev".into(), Element::Versionstamp(stamp)]).unwrap();
    // "log/" + 02 'e' 'v' 00 + 33, so the placeholder starts at byte 9.
    let (body, offset) = packed.split_at(packed.len() - 4);
    assert_eq!(offset, 9u32.to_le_bytes());
    assert_eq!(&body[9..19], &[0xff; 10]);
    assert_eq!(&body[19..], &7u16.to_be_bytes());
    // Nested stamps are found too.
    let nested = pack_with_versionstamp(
        b"",
        &[Element::Nested(vec![
            Element::Int(1),
            Element::Versionstamp(stamp),
        ])],
    )
    .unwrap();
    assert_eq!(nested[nested.len() - 4..], 4u32.to_le_bytes());
    // Exactly one is required; a complete stamp does not count.
    for bad in [
        vec![],
        vec![Element::Versionstamp(stamp), Element::Versionstamp(stamp)],
        vec![Element::Versionstamp(stamp.complete(
            ferrisdb_core::Versionstamp::new(ferrisdb_core::Version(9), 1),
        ))],
    ] {
        assert!(pack_with_versionstamp(prefix, &bad).is_err());
    }
}

/// The order the encoding must preserve, written directly from the spec.
fn semantic_cmp(a: &[Element], b: &[Element]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = element_cmp(x, y);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

fn type_rank(e: &Element) -> u8 {
    match e {
        Element::Null => 0,
        Element::Bytes(_) => 1,
        Element::String(_) => 2,
        Element::Nested(_) => 5,
        Element::Int(_) => 0x14,
        Element::Float(_) => 0x20,
        Element::Double(_) => 0x21,
        Element::Bool(_) => 0x26,
        Element::Uuid(_) => 0x30,
        Element::Versionstamp(_) => 0x33,
    }
}

fn element_cmp(x: &Element, y: &Element) -> Ordering {
    use Element::*;
    match (x, y) {
        (Bytes(a), Bytes(b)) => a.cmp(b),
        (String(a), String(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Nested(a), Nested(b)) => semantic_cmp(a, b),
        (Int(a), Int(b)) => a.cmp(b),
        (Float(a), Float(b)) => a.total_cmp(b),
        (Double(a), Double(b)) => a.total_cmp(b),
        (Bool(a), Bool(b)) => a.cmp(b),
        (Uuid(a), Uuid(b)) => a.cmp(b),
        (Versionstamp(a), Versionstamp(b)) => a.cmp(b),
        _ => type_rank(x).cmp(&type_rank(y)),
    }
}

fn element() -> impl Strategy<Value = Element> {
    let leaf = prop_oneof![
        Just(Element::Null),
        proptest::collection::vec(prop_oneof![Just(0u8), Just(0xff), any::<u8>()], 0..6)
            .prop_map(Element::Bytes),
        "[a\\x00é\\u{10000}b]{0,5}".prop_map(Element::String),
        prop_oneof![
            -(u64::MAX as i128)..=(u64::MAX as i128),
            -300i128..300,
            Just(0i128),
        ]
        .prop_map(Element::Int),
        any::<f32>().prop_map(Element::Float),
        any::<f64>().prop_map(Element::Double),
        any::<bool>().prop_map(Element::Bool),
        any::<[u8; 16]>().prop_map(Element::Uuid),
        (any::<[u8; 10]>(), any::<u16>()).prop_map(|(transaction, user)| {
            Element::Versionstamp(Versionstamp { transaction, user })
        }),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        proptest::collection::vec(inner, 0..4).prop_map(Element::Nested)
    })
}

fn tuple() -> impl Strategy<Value = Vec<Element>> {
    proptest::collection::vec(element(), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn packed_order_is_tuple_order(a in tuple(), b in tuple()) {
        let (pa, pb) = (pack(&a).unwrap(), pack(&b).unwrap());
        prop_assert_eq!(pa.cmp(&pb), semantic_cmp(&a, &b), "{:?} vs {:?}", a, b);
    }

    #[test]
    fn unpack_reverses_pack(t in tuple()) {
        let packed = pack(&t).unwrap();
        let back = unpack(&packed).unwrap();
        // Compared through the encoding: NaN != NaN as a value, but its bits survive.
        prop_assert_eq!(pack(&back).unwrap(), packed);
        prop_assert_eq!(back.len(), t.len());
    }

    #[test]
    fn any_bytes_either_fail_or_are_a_canonical_encoding(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(t) = unpack(&bytes) {
            prop_assert_eq!(pack(&t).unwrap(), bytes);
        }
    }
}
