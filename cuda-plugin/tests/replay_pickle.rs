//! The snapshot decoder's pickle machine against Python's own pickle: every opcode Python
//! writes for builtin values, protocols 0 to 5, decoded to the same values; and fuzzing
//! (arbitrary bytes, mutated real snapshots): it never panics, and what it accepts stays
//! within its bounds.

use poolside_cuda::replay::pickle::{decode, decode_salvage, Arena, V};
use poolside_cuda::replay::snapshot::parse;
use proptest::prelude::*;
use std::fmt::Write;
use std::process::Command;

/// The canonical form both sides print (see CANON in the script below).
fn canon(a: &Arena, v: V, out: &mut String) {
    let hex = |b: &[u8]| {
        b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
    };
    let seq = |out: &mut String, items: &[V], open: char, close: char| {
        out.push(open);
        for (i, &x) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            canon(a, x, out);
        }
        out.push(close);
    };
    match v {
        V::None => out.push('N'),
        V::Bool(b) => out.push(if b { 'T' } else { 'F' }),
        V::Int(_) | V::Big(_) => match a.int(v) {
            Some(i) => {
                let _ = write!(out, "i{i}");
            }
            None => out.push_str("i?"),
        },
        V::Float(f) => {
            let _ = write!(out, "f{}", hex(&f.to_be_bytes()));
        }
        V::Str(i) => {
            let _ = write!(out, "s{}", hex(a.strs[i as usize].as_bytes()));
        }
        V::Bytes(i) => {
            let _ = write!(out, "b{}", hex(&a.bytes[i as usize]));
        }
        V::List(i) => seq(out, &a.seqs[i as usize], '[', ']'),
        V::Tuple(i) => seq(out, &a.seqs[i as usize], '(', ')'),
        V::Set(i) => {
            let mut items: Vec<String> = a.seqs[i as usize]
                .iter()
                .map(|&x| {
                    let mut s = String::new();
                    canon(a, x, &mut s);
                    s
                })
                .collect();
            items.sort();
            let _ = write!(out, "<{}>", items.join(","));
        }
        V::Dict(i) => {
            out.push('{');
            for (n, &(k, x)) in a.dicts[i as usize].iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canon(a, k, out);
                out.push(':');
                canon(a, x, out);
            }
            out.push('}');
        }
    }
}

/// For each protocol: the pickle of a list of test values, the same pickle after
/// `pickletools.optimize` (no unused PUTs), and the canonical form of the values.
const SCRIPT: &str = r#"
import pickle, pickletools, struct, sys
def CANON(o):
    if o is None: return 'N'
    if o is True: return 'T'
    if o is False: return 'F'
    if isinstance(o, int): return 'i%d' % o if abs(o) < 2**127 else 'i?'
    if isinstance(o, float): return 'f' + struct.pack('>d', o).hex()
    if isinstance(o, str): return 's' + o.encode('utf-8').hex()
    if isinstance(o, (bytes, bytearray)): return 'b' + bytes(o).hex()
    if isinstance(o, list): return '[' + ','.join(map(CANON, o)) + ']'
    if isinstance(o, tuple): return '(' + ','.join(map(CANON, o)) + ')'
    if isinstance(o, (set, frozenset)): return '<' + ','.join(sorted(map(CANON, o))) + '>'
    if isinstance(o, dict): return '{' + ','.join(CANON(k) + ':' + CANON(v) for k, v in o.items()) + '}'
    raise TypeError(type(o))
shared = ['shared', 1]
frame = {'filename': '/home/u/modèle.py', 'line': 3, 'name': 'forward'}
ops = set()
for p in range(6):
    vals = [None, True, False, 0, 1, 255, 256, 65535, 65536, -1, -256, 2**31 - 1, -2**31,
            2**31, 2**63 - 1, -2**63, 2**64, 2**100, -(2**100), 2**126, 2**2100,
            0.0, -0.5, 1e300, float('inf'), 1.5e-300,
            '', 'ascii', 'é', '日本語', '😀', 'back\\slash\nnew\rline\x00nul\x1a \\u1234', 'x' * 300,
            [], (), {}, (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4),
            [shared, shared, frame, [frame, frame]],
            {'a': [shared] * 3, 1: 'int key', (1, 2): 'tuple key', 'frames': [frame] * 5, None: 0.25},
            list(range(2500)), {str(i): i for i in range(1200)}, [[[[['deep']]]]], (shared, shared)]
    if p >= 3: vals += [b'', b'\x00\xff', b'y' * 300]
    if p >= 4: vals += [frozenset({1, 2}), {3, 'x'}, 'z' * 70000]
    if p >= 5: vals += [bytearray(b'ab')]
    late = ['memoized after 255 others']
    vals += [late, late]  # fetched with LONG_BINGET (memo index > 255)
    b = pickle.dumps(vals, protocol=p)
    o = pickletools.optimize(b)
    for x in (b, o):
        ops.update(op.name for op, _, _ in pickletools.genops(x))
    print(p, b.hex(), o.hex(), CANON(vals))
print('OPS', *sorted(ops))
"#;

#[test]
fn decodes_every_opcode_python_writes_for_builtins_as_python_does() {
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut protocols = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f[0] == "OPS" {
            // The values above make Python use every opcode a builtin value can need.
            for op in [
                "PROTO",
                "FRAME",
                "STOP",
                "NONE",
                "NEWTRUE",
                "NEWFALSE",
                "INT",
                "BININT",
                "BININT1",
                "BININT2",
                "LONG",
                "LONG1",
                "LONG4",
                "FLOAT",
                "BINFLOAT",
                "UNICODE",
                "BINUNICODE",
                "SHORT_BINUNICODE",
                "BINBYTES",
                "SHORT_BINBYTES",
                "BYTEARRAY8",
                "EMPTY_LIST",
                "LIST",
                "APPEND",
                "APPENDS",
                "EMPTY_TUPLE",
                "TUPLE",
                "TUPLE1",
                "TUPLE2",
                "TUPLE3",
                "EMPTY_DICT",
                "DICT",
                "SETITEM",
                "SETITEMS",
                "EMPTY_SET",
                "ADDITEMS",
                "FROZENSET",
                "MARK",
                "GET",
                "BINGET",
                "PUT",
                "BINPUT",
                "LONG_BINPUT",
                "LONG_BINGET",
                "MEMOIZE",
            ] {
                assert!(f.contains(&op), "Python wrote no {op}: {line}");
            }
            continue;
        }
        let (p, plain, optimized, want) = (f[0], f[1], f[2], f[3]);
        for hex in [plain, optimized] {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let d = decode(&bytes).unwrap_or_else(|e| panic!("protocol {p}: {e}"));
            let mut got = String::new();
            canon(&d.arena, d.root, &mut got);
            assert!(got == want, "protocol {p}: decoded\n{got}\nPython\n{want}");
        }
        protocols += 1;
    }
    assert_eq!(protocols, 6);
}

#[test]
fn rare_opcodes_and_self_reference() {
    // Opcodes Python 3 writes only for huge or Python 2 values, built by hand.
    let mut b = vec![0x80, 4, b'('];
    b.push(0x8d); // BINUNICODE8
    b.extend(2u64.to_le_bytes());
    b.extend("é".as_bytes());
    b.push(0x8e); // BINBYTES8
    b.extend(1u64.to_le_bytes());
    b.push(7);
    b.extend(b"S'a\\x41\\'b'\n"); // Python 2 STRING
    b.extend(b"T\x02\x00\x00\x00hi"); // BINSTRING
    b.extend(b"U\x02yo"); // SHORT_BINSTRING
    b.extend(b"I01\n"); // protocol 0 True
    b.extend(b"L-5L\n"); // protocol 0 long
    b.extend(b"K\x09\x32"); // DUP
    b.extend(b"K\x08\x30"); // POP
    b.extend(b"l."); // LIST, STOP
    let d = decode(&b).unwrap();
    let mut got = String::new();
    canon(&d.arena, d.root, &mut got);
    assert_eq!(got, "[sc3a9,b07,s61412762,s6869,s796f,T,i-5,i9,i9]");
    // A list that contains itself (l.append(l)): the same handle, no copy, no hang.
    let out = Command::new("python3")
        .args([
            "-c",
            "import pickle,sys; l=[1]; l.append(l); sys.stdout.buffer.write(pickle.dumps(l, 4))",
        ])
        .output()
        .unwrap();
    let d = decode(&out.stdout).unwrap();
    let items = d.arena.seq(d.root).unwrap();
    assert_eq!(items[1], d.root);
    // A tuple inside itself (through a list): Python writes POP_MARK and fetches the
    // memoized tuple instead, in every protocol from 1 on.
    for p in 1..=5 {
        let out = Command::new("python3")
            .args(["-c", &format!("import pickle,sys; l=[]; t=(l, 2, 3, 4); l.append(t); b=pickle.dumps(t, {p}); assert b'1' in b; sys.stdout.buffer.write(b)")])
            .output()
            .unwrap();
        assert!(out.status.success());
        let d = decode(&out.stdout).unwrap();
        let t = d.arena.seq(d.root).unwrap();
        assert!(matches!(d.root, V::Tuple(_)) && t[1] == V::Int(2));
        assert_eq!(d.arena.seq(t[0]).unwrap(), &[d.root]);
    }
}

#[test]
fn bounds_are_refusals() {
    // More than a million values on the stack.
    let mut b = vec![0x80, 4];
    b.extend(std::iter::repeat_n(b'N', (1 << 20) + 1));
    b.push(b'.');
    assert!(decode(&b)
        .unwrap_err()
        .contains("values on the pickle stack"));
    // A length beyond the input allocates nothing and reads as cut short.
    let e = decode(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f").unwrap_err();
    assert!(e.contains("before its STOP"), "{e}");
    // Memo entries that were never set; a newer protocol.
    assert!(decode(b"\x80\x04h\x05.")
        .unwrap_err()
        .contains("memo entry 5"));
    assert!(decode(b"\x80\x06N.").unwrap_err().contains("protocol 6"));
    // One trace list referenced for a million devices' worth of entries.
    let mut b = vec![0x80, 4, b'}', b'(', 0x8c, 13];
    b.extend(b"device_traces");
    b.extend([b']', b'(', b']', 0x94, b'(']);
    b.extend([b'}', b'(', 0x8c, 6]);
    b.extend(b"action");
    b.extend([0x8c, 5]);
    b.extend(b"alloc");
    b.extend([0x8c, 4]);
    b.extend(b"size");
    b.extend([b'K', 1, b'u']);
    b.extend(std::iter::repeat_n(b'2', 20_000));
    b.extend([b'e']);
    b.extend(std::iter::repeat_n([b'h', 0], 4000).flatten());
    b.extend([b'e', b'u', b'.']);
    let e = parse(&b).unwrap_err();
    assert!(e.contains("over and over") || e.contains("device 4"), "{e}");
}

fn kept() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/snapshots/multi_gpu_p4.pickle"
    ))
    .unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if b.is_empty() {
            break;
        }
        let n = b.len();
        match *m {
            Mutation::Set(i, x) => b[i % n] = x,
            Mutation::Insert(i, x) => b.insert(i % (n + 1), x),
            Mutation::Remove(i) => {
                b.remove(i % n);
            }
            Mutation::Truncate(i) => b.truncate(i % n),
        }
    }
    b
}

/// `default` cases, or `PROPTEST_CASES` when set (for a longer run by hand).
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(n)
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&b);
        let _ = decode_salvage(&b);
        let _ = parse(&b);
    }

    #[test]
    fn arbitrary_opcodes_never_panic(ops in proptest::collection::vec(any::<u16>(), 0..300)) {
        // Container, stack and memo opcodes (where the machine's state can go wrong), and
        // now and then any byte (a memo index, a length, another opcode).
        const OPS: &[u8] = b"(]})aesutld012N.h\x94\x85\x86\x87\x8f\x90\x91\x8c";
        let mut b = vec![0x80, 4];
        b.extend(ops.iter().map(|&x| {
            let i = x as usize % (OPS.len() + 4);
            OPS.get(i).copied().unwrap_or((x >> 8) as u8)
        }));
        let _ = decode(&b);
        let _ = decode_salvage(&b);
        let _ = parse(&b);
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn mutated_snapshots_never_panic(ms in proptest::collection::vec(mutation(), 1..8)) {
        let b = mutate(kept(), &ms);
        let _ = decode(&b);
        if let Ok(s) = parse(&b) {
            // Whatever was accepted replays within a small simulated device.
            let mut cfg = poolside_cuda::config::PluginConfig::default();
            cfg.apply("TEST", "stats:false", false);
            let _ = poolside_cuda::replay::analyse(&b, &cfg, Some(256 << 20));
            prop_assert!(s.devices.len() <= 4096);
        }
    }
}
