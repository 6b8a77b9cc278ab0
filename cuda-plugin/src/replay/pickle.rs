//! A small, strict pickle machine for the builtin types (protocols 0 to 5), written for
//! PyTorch memory snapshots.
//!
//! - Values live in an arena; the stack, the memo and containers hold [`V`] handles
//!   (16 bytes, `Copy`). A memoized object fetched N times (GET / BINGET / LONG_BINGET) is
//!   the same handle N times: nothing is copied or converted per reference, so a snapshot
//!   whose frames are shared by every trace entry costs what its bytes cost.
//! - Nothing recurses on the input's nesting: the machine is a loop over opcodes, dropping
//!   the arena is flat (containers hold handles, not boxes), and readers of the result walk
//!   a fixed schema. Nesting is still bounded ([`MAX_DEPTH`], [`MAX_STACK`]) and a pickle
//!   beyond the bounds is refused with a message.
//! - Objects are never built: GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ,
//!   NEWOBJ_EX, PERSID, BINPERSID, EXT1/2/4 and out-of-band buffers are refused, naming what
//!   the pickle referenced.
//! - A pickle that ends before its STOP (a file cut short) is refused by [`decode`]; with
//!   [`decode_salvage`] the containers it was building are closed the way the pickler would
//!   have closed them, and the caller learns where the input stopped.

use std::collections::HashMap;

/// Containers nested deeper than this are refused (a memory snapshot nests 7 levels).
pub const MAX_DEPTH: u32 = 1000;
/// Values and marks on the machine's stack at once. Python's pickler batches container
/// items by 1000 (2000 stack slots for a dict), far below this.
pub const MAX_STACK: usize = 1 << 20;

/// A value: scalars inline, everything else a handle into the [`Arena`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum V {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64: index into `Arena::bigs` (None there: beyond 128 bits).
    Big(u32),
    Float(f64),
    Str(u32),
    Bytes(u32),
    List(u32),
    Tuple(u32),
    Set(u32),
    Dict(u32),
}

/// Everything a pickle built. Containers hold handles, so shared objects exist once.
#[derive(Default, Debug)]
pub struct Arena {
    pub strs: Vec<Box<str>>,
    pub bytes: Vec<Box<[u8]>>,
    pub bigs: Vec<Option<i128>>,
    /// Lists, tuples and sets.
    pub seqs: Vec<Vec<V>>,
    pub dicts: Vec<Vec<(V, V)>>,
    /// Nesting depth of each seq / dict (1 for one holding only scalars).
    seq_depth: Vec<u32>,
    dict_depth: Vec<u32>,
}

impl Arena {
    /// The string behind `v`, if it is one.
    pub fn str(&self, v: V) -> Option<&str> {
        match v {
            V::Str(i) => self.strs.get(i as usize).map(|s| &**s),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub fn seq(&self, v: V) -> Option<&[V]> {
        match v {
            V::List(i) | V::Tuple(i) => self.seqs.get(i as usize).map(|s| &s[..]),
            _ => None,
        }
    }

    /// A dict's items, in insertion order (a repeated key appears twice; see [`Arena::get`]).
    pub fn dict(&self, v: V) -> Option<&[(V, V)]> {
        match v {
            V::Dict(i) => self.dicts.get(i as usize).map(|d| &d[..]),
            _ => None,
        }
    }

    /// `d[key]` for a string key; the last value set wins, as in Python.
    pub fn get(&self, d: V, key: &str) -> Option<V> {
        self.dict(d)?
            .iter()
            .rev()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// An integer (bool counts as 0 / 1, as in Python) that fits in i128.
    pub fn int(&self, v: V) -> Option<i128> {
        match v {
            V::Int(i) => Some(i as i128),
            V::Bool(b) => Some(b as i128),
            V::Big(i) => self.bigs.get(i as usize).copied().flatten(),
            _ => None,
        }
    }

    fn depth(&self, v: V) -> u32 {
        match v {
            V::List(i) | V::Tuple(i) | V::Set(i) => self.seq_depth[i as usize],
            V::Dict(i) => self.dict_depth[i as usize],
            _ => 0,
        }
    }

    fn new_seq(&mut self, items: Vec<V>, tag: fn(u32) -> V) -> Result<V, String> {
        let d = items.iter().map(|&v| self.depth(v)).max().unwrap_or(0) + 1;
        if d > MAX_DEPTH {
            return Err(too_deep());
        }
        self.seqs.push(items);
        self.seq_depth.push(d);
        Ok(tag((self.seqs.len() - 1) as u32))
    }

    fn new_dict(&mut self) -> V {
        self.dicts.push(Vec::new());
        self.dict_depth.push(1);
        V::Dict((self.dicts.len() - 1) as u32)
    }

    fn new_str(&mut self, s: String) -> V {
        self.strs.push(s.into_boxed_str());
        V::Str((self.strs.len() - 1) as u32)
    }

    fn new_int(&mut self, i: i128) -> V {
        match i64::try_from(i) {
            Ok(i) => V::Int(i),
            Err(_) => {
                self.bigs.push(Some(i));
                V::Big((self.bigs.len() - 1) as u32)
            }
        }
    }

    /// Appends `items` to the list or set `target` (APPEND, APPENDS, ADDITEMS).
    fn extend(&mut self, target: V, items: Vec<V>) -> Result<(), String> {
        let i = match target {
            V::List(i) | V::Set(i) => i as usize,
            other => return Err(format!("cannot append to a {}", kind(other))),
        };
        let d = items.iter().map(|&v| self.depth(v)).max().unwrap_or(0) + 1;
        if d > MAX_DEPTH {
            return Err(too_deep());
        }
        self.seq_depth[i] = self.seq_depth[i].max(d);
        self.seqs[i].extend(items);
        Ok(())
    }

    /// Sets `pairs` in the dict `target` (SETITEM, SETITEMS).
    fn set_items(&mut self, target: V, pairs: &[V]) -> Result<(), String> {
        let V::Dict(i) = target else {
            return Err(format!("cannot set items of a {}", kind(target)));
        };
        let i = i as usize;
        let mut d = 1;
        for kv in pairs.chunks_exact(2) {
            if matches!(kv[0], V::List(_) | V::Dict(_) | V::Set(_)) {
                return Err(format!("unhashable dict key (a {})", kind(kv[0])));
            }
            d = d.max(self.depth(kv[0]) + 1).max(self.depth(kv[1]) + 1);
            self.dicts[i].push((kv[0], kv[1]));
        }
        if d > MAX_DEPTH {
            return Err(too_deep());
        }
        self.dict_depth[i] = self.dict_depth[i].max(d);
        Ok(())
    }
}

fn too_deep() -> String {
    format!("containers nested deeper than {MAX_DEPTH} levels (a memory snapshot nests 7)")
}

fn kind(v: V) -> &'static str {
    match v {
        V::None => "None",
        V::Bool(_) => "bool",
        V::Int(_) | V::Big(_) => "int",
        V::Float(_) => "float",
        V::Str(_) => "str",
        V::Bytes(_) => "bytes",
        V::List(_) => "list",
        V::Tuple(_) => "tuple",
        V::Set(_) => "set",
        V::Dict(_) => "dict",
    }
}

/// A decoded pickle: its arena and the value STOP returned.
#[derive(Debug)]
pub struct Decoded {
    pub arena: Arena,
    pub root: V,
    /// Where the input ended before STOP, when salvaged.
    pub cut_at: Option<usize>,
}

/// Decodes a complete pickle.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    Machine::new(bytes).run(false)
}

/// Decodes a pickle; one that ends before STOP (a file cut short) gives what it held.
pub fn decode_salvage(bytes: &[u8]) -> Result<Decoded, String> {
    Machine::new(bytes).run(true)
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    arena: Arena,
    stack: Vec<V>,
    marks: Vec<usize>,
    memo: HashMap<u32, V>,
}

/// The input ended inside an opcode or before STOP.
struct Eof;

enum Step {
    Go,
    Stop(V),
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            data,
            pos: 0,
            arena: Arena::default(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn run(mut self, salvage: bool) -> Result<Decoded, String> {
        loop {
            let at = self.pos;
            match self.step() {
                Ok(Ok(Step::Go)) => {}
                Ok(Ok(Step::Stop(root))) => {
                    return Ok(Decoded {
                        arena: self.arena,
                        root,
                        cut_at: None,
                    })
                }
                Ok(Err(e)) => {
                    let op = self.data.get(at).copied().unwrap_or(0);
                    return Err(format!("pickle opcode {op:#04x} at byte {at}: {e}"));
                }
                Err(Eof) if salvage && at > 0 => {
                    let root = self.close_open()?;
                    return Ok(Decoded {
                        arena: self.arena,
                        root,
                        cut_at: Some(at),
                    });
                }
                Err(Eof) => {
                    return Err(format!(
                        "the pickle ends at byte {} before its STOP opcode (a file cut short?)",
                        self.data.len()
                    ))
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Eof> {
        let end = self.pos.checked_add(n).ok_or(Eof)?;
        let s = self.data.get(self.pos..end).ok_or(Eof)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Eof> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> Result<u64, Eof> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
    }

    /// A line up to (not including) '\n'.
    fn line(&mut self) -> Result<&'a [u8], Eof> {
        let rest = self.data.get(self.pos..).ok_or(Eof)?;
        let n = rest.iter().position(|&b| b == b'\n').ok_or(Eof)?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    /// `n` bytes whose length came from the input: checked against what is left first, so
    /// a forged length allocates nothing.
    fn counted(&mut self, n: u64) -> Result<&'a [u8], Eof> {
        if n > (self.data.len() - self.pos) as u64 {
            return Err(Eof);
        }
        self.take(n as usize)
    }

    fn push(&mut self, v: V) -> Result<(), String> {
        if self.stack.len() + self.marks.len() >= MAX_STACK {
            return Err(format!(
                "more than {MAX_STACK} values on the pickle stack (nested too deeply)"
            ));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<V, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self) -> Result<V, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        Ok(*self.stack.last().expect("checked above"))
    }

    fn pop_mark(&mut self) -> Result<Vec<V>, String> {
        let m = self.marks.pop().ok_or("no MARK to pop to")?;
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&self, i: u64) -> Result<V, String> {
        u32::try_from(i)
            .ok()
            .and_then(|i| self.memo.get(&i).copied())
            .ok_or_else(|| format!("memo entry {i} was never set"))
    }

    fn memo_put(&mut self, i: u64) -> Result<(), String> {
        let i = u32::try_from(i).map_err(|_| format!("memo index {i} out of range"))?;
        let v = self.top()?;
        self.memo.insert(i, v);
        Ok(())
    }

    fn string(&mut self, b: &[u8]) -> Result<(), String> {
        let v = self.arena.new_str(String::from_utf8_lossy(b).into_owned());
        self.push(v)
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), String> {
        self.arena.bytes.push(b.into());
        let v = V::Bytes((self.arena.bytes.len() - 1) as u32);
        self.push(v)
    }

    fn long(&mut self, b: &[u8]) -> Result<(), String> {
        let v = if b.is_empty() {
            V::Int(0)
        } else if b.len() <= 16 {
            // Little-endian two's complement, sign-extended to 128 bits.
            let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
            let mut w = [fill; 16];
            w[..b.len()].copy_from_slice(b);
            self.arena.new_int(i128::from_le_bytes(w))
        } else {
            self.arena.bigs.push(None);
            V::Big((self.arena.bigs.len() - 1) as u32)
        };
        self.push(v)
    }

    fn refuse(&self, what: &str) -> String {
        format!(
            "refused: the pickle {what}; a PyTorch memory snapshot holds only builtin values \
             (dict, list, tuple, str, int, float, bool, None), and poolside never runs code \
             from a pickle"
        )
    }

    /// One opcode. Outer error: the input ended; inner: the pickle is bad or refused.
    fn step(&mut self) -> Result<Result<Step, String>, Eof> {
        let op = self.u8()?;
        Ok(match op {
            0x80 => {
                let p = self.u8()?;
                if p > 5 {
                    Err(format!("pickle protocol {p} is newer than 5"))
                } else {
                    Ok(Step::Go)
                }
            }
            0x95 => {
                // FRAME: a length prefix for buffered reading; the opcodes follow as usual.
                self.take(8)?;
                Ok(Step::Go)
            }
            b'.' => return Ok(self.pop().map(Step::Stop)),
            _ => self.op(op)?.map(|_| Step::Go),
        })
    }

    fn op(&mut self, op: u8) -> Result<Result<(), String>, Eof> {
        Ok(match op {
            // Scalars.
            b'N' => self.push(V::None),
            0x88 => self.push(V::Bool(true)),
            0x89 => self.push(V::Bool(false)),
            b'J' => {
                let v = self.le(4)? as u32 as i32 as i64;
                self.push(V::Int(v))
            }
            b'K' => {
                let v = self.le(1)? as i64;
                self.push(V::Int(v))
            }
            b'M' => {
                let v = self.le(2)? as i64;
                self.push(V::Int(v))
            }
            0x8a => {
                let n = self.le(1)?;
                let b = self.counted(n)?;
                self.long(b)
            }
            0x8b => {
                let n = self.le(4)? as u32 as i32;
                if n < 0 {
                    Err("LONG4 with a negative length".into())
                } else {
                    let b = self.counted(n as u64)?;
                    self.long(b)
                }
            }
            b'I' => {
                let l = self.line()?;
                match l {
                    b"00" => self.push(V::Bool(false)),
                    b"01" => self.push(V::Bool(true)),
                    _ => match parse_int(l) {
                        Some(i) => {
                            let v = self.arena.new_int(i);
                            self.push(v)
                        }
                        None => Err("INT without a decimal integer".into()),
                    },
                }
            }
            b'L' => {
                let l = self.line()?;
                let l = l.strip_suffix(b"L").unwrap_or(l);
                match parse_int(l) {
                    Some(i) => {
                        let v = self.arena.new_int(i);
                        self.push(v)
                    }
                    None if l.len() > 1 && l.iter().all(|c| c.is_ascii_digit() || *c == b'-') => {
                        self.arena.bigs.push(None);
                        let v = V::Big((self.arena.bigs.len() - 1) as u32);
                        self.push(v)
                    }
                    None => Err("LONG without a decimal integer".into()),
                }
            }
            b'F' => {
                let l = self.line()?;
                match std::str::from_utf8(l)
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                {
                    Some(f) => self.push(V::Float(f)),
                    None => Err("FLOAT without a number".into()),
                }
            }
            b'G' => {
                let b = self.take(8)?;
                let f = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                self.push(V::Float(f))
            }
            // Strings (str).
            0x8c => {
                let n = self.le(1)?;
                let b = self.counted(n)?;
                self.string(b)
            }
            b'X' => {
                let n = self.le(4)?;
                let b = self.counted(n)?;
                self.string(b)
            }
            0x8d => {
                let n = self.le(8)?;
                let b = self.counted(n)?;
                self.string(b)
            }
            b'V' => {
                let l = self.line()?;
                let s = raw_unicode_escape(l);
                let v = self.arena.new_str(s);
                self.push(v)
            }
            // Python 2 byte strings, read as Python 3 reads them by default (text).
            b'S' => {
                let l = self.line()?;
                match python2_repr(l) {
                    Some(b) => self.string(&b),
                    None => Err("STRING without a quoted string".into()),
                }
            }
            b'T' => {
                let n = self.le(4)? as u32 as i32;
                if n < 0 {
                    Err("BINSTRING with a negative length".into())
                } else {
                    let b = self.counted(n as u64)?;
                    self.string(b)
                }
            }
            b'U' => {
                let n = self.le(1)?;
                let b = self.counted(n)?;
                self.string(b)
            }
            // Bytes.
            b'B' => {
                let n = self.le(4)?;
                let b = self.counted(n)?;
                self.bytes(b)
            }
            b'C' => {
                let n = self.le(1)?;
                let b = self.counted(n)?;
                self.bytes(b)
            }
            0x8e | 0x96 => {
                let n = self.le(8)?;
                let b = self.counted(n)?;
                self.bytes(b)
            }
            // Containers.
            b']' => self
                .arena
                .new_seq(Vec::new(), V::List)
                .and_then(|v| self.push(v)),
            b')' => self
                .arena
                .new_seq(Vec::new(), V::Tuple)
                .and_then(|v| self.push(v)),
            0x8f => self
                .arena
                .new_seq(Vec::new(), V::Set)
                .and_then(|v| self.push(v)),
            b'}' => {
                let d = self.arena.new_dict();
                self.push(d)
            }
            b'(' => {
                if self.stack.len() + self.marks.len() >= MAX_STACK {
                    Err(format!("more than {MAX_STACK} values on the pickle stack"))
                } else {
                    self.marks.push(self.stack.len());
                    Ok(())
                }
            }
            b'l' => self
                .pop_mark()
                .and_then(|items| self.arena.new_seq(items, V::List))
                .and_then(|v| self.push(v)),
            b't' => self
                .pop_mark()
                .and_then(|items| self.arena.new_seq(items, V::Tuple))
                .and_then(|v| self.push(v)),
            0x91 => self
                .pop_mark()
                .and_then(|items| self.arena.new_seq(items, V::Set))
                .and_then(|v| self.push(v)),
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    Err("stack underflow".into())
                } else {
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.arena
                        .new_seq(items, V::Tuple)
                        .and_then(|v| self.push(v))
                }
            }
            b'd' => self.pop_mark().and_then(|items| {
                if items.len() % 2 != 0 {
                    return Err("DICT with an odd number of items".into());
                }
                let d = self.arena.new_dict();
                self.arena.set_items(d, &items)?;
                self.push(d)
            }),
            b'a' => self.pop().and_then(|v| {
                let t = self.top()?;
                self.arena.extend(t, vec![v])
            }),
            b'e' | 0x90 => self.pop_mark().and_then(|items| {
                let t = self.top()?;
                if op == 0x90 && !matches!(t, V::Set(_)) {
                    return Err(format!("ADDITEMS to a {}", kind(t)));
                }
                self.arena.extend(t, items)
            }),
            b's' => (|| {
                let v = self.pop()?;
                let k = self.pop()?;
                let t = self.top()?;
                self.arena.set_items(t, &[k, v])
            })(),
            b'u' => self.pop_mark().and_then(|items| {
                if items.len() % 2 != 0 {
                    return Err("SETITEMS with an odd number of items".into());
                }
                let t = self.top()?;
                self.arena.set_items(t, &items)
            }),
            // Stack and memo.
            b'0' => {
                if self.stack.len() > self.marks.last().copied().unwrap_or(0) {
                    self.stack.pop();
                    Ok(())
                } else {
                    // Python pops a mark when the stack above it is empty.
                    self.pop_mark().map(|_| ())
                }
            }
            b'1' => self.pop_mark().map(|_| ()),
            b'2' => self.top().and_then(|v| self.push(v)),
            b'g' => {
                let l = self.line()?;
                match parse_int(l).and_then(|i| u64::try_from(i).ok()) {
                    Some(i) => self.memo_get(i).and_then(|v| self.push(v)),
                    None => Err("GET without an index".into()),
                }
            }
            b'h' => {
                let i = self.le(1)?;
                self.memo_get(i).and_then(|v| self.push(v))
            }
            b'j' => {
                let i = self.le(4)?;
                self.memo_get(i).and_then(|v| self.push(v))
            }
            b'p' => {
                let l = self.line()?;
                match parse_int(l).and_then(|i| u64::try_from(i).ok()) {
                    Some(i) => self.memo_put(i),
                    None => Err("PUT without an index".into()),
                }
            }
            b'q' => {
                let i = self.le(1)?;
                self.memo_put(i)
            }
            b'r' => {
                let i = self.le(4)?;
                self.memo_put(i)
            }
            0x94 => {
                let i = self.memo.len() as u64;
                self.memo_put(i)
            }
            // Everything that would build an object or reach outside the pickle.
            b'c' | b'i' => {
                let module = self.line()?;
                let name = self.line()?;
                let what = if op == b'c' { "GLOBAL" } else { "INST" };
                Err(self.refuse(&format!(
                    "references the Python global {}.{} ({what})",
                    String::from_utf8_lossy(module),
                    String::from_utf8_lossy(name)
                )))
            }
            0x93 => {
                let n = self.stack.len();
                let name = |i: usize| {
                    n.checked_sub(i)
                        .and_then(|j| self.arena.str(self.stack[j]))
                        .unwrap_or("?")
                        .to_string()
                };
                let (module, attr) = (name(2), name(1));
                Err(self.refuse(&format!(
                    "references the Python global {module}.{attr} (STACK_GLOBAL)"
                )))
            }
            b'R' => Err(self.refuse("calls an object (REDUCE)")),
            b'b' => Err(self.refuse("sets an object's state (BUILD)")),
            b'o' => Err(self.refuse("builds a class instance (OBJ)")),
            0x81 => Err(self.refuse("builds a class instance (NEWOBJ)")),
            0x92 => Err(self.refuse("builds a class instance (NEWOBJ_EX)")),
            b'P' => {
                let id = self.line()?;
                Err(self.refuse(&format!(
                    "references the persistent object '{}' (PERSID)",
                    String::from_utf8_lossy(id)
                )))
            }
            b'Q' => Err(self.refuse("references a persistent object (BINPERSID)")),
            0x82..=0x84 => {
                let n = [1, 2, 4][(op - 0x82) as usize];
                let code = self.le(n)?;
                Err(self.refuse(&format!(
                    "references extension code {code} of the copyreg registry (EXT{n})"
                )))
            }
            0x97 | 0x98 => Err(self.refuse("uses an out-of-band buffer (NEXT_BUFFER)")),
            _ => Err(format!("unknown opcode {op:#04x}")),
        })
    }

    /// After a cut-short input: closes the containers under construction as the pickler
    /// would have (innermost first) and returns the outermost value.
    fn close_open(&mut self) -> Result<V, String> {
        while let Some(m) = self.marks.pop() {
            let mut items = self.stack.split_off(m.min(self.stack.len()));
            let owner = if m > 0 {
                self.stack.get(m - 1).copied()
            } else {
                None
            };
            match owner {
                Some(o @ (V::List(_) | V::Set(_))) => self.arena.extend(o, items)?,
                Some(o @ V::Dict(_)) => {
                    if items.len() % 2 == 1 {
                        // A value being built for a one-item list (APPEND, no MARK) sits
                        // after that list; a lone key has no value yet and goes.
                        let last = items.pop().expect("odd length");
                        let prev = items.last().copied();
                        if let (Some(p @ V::List(_)), true) =
                            (prev, matches!(last, V::Dict(_) | V::List(_) | V::Tuple(_)))
                        {
                            self.arena.extend(p, vec![last])?;
                        }
                    }
                    self.arena.set_items(o, &items)?;
                }
                _ => {
                    // Items of a tuple that never reached its TUPLE opcode.
                    let t = self.arena.new_seq(items, V::Tuple)?;
                    self.stack.push(t);
                }
            }
        }
        // Protocol 0 and one-item containers: APPEND / SETITEM one value at a time.
        while self.stack.len() > 1 {
            let v = self.stack.pop().expect("len > 1");
            let n = self.stack.len();
            match self.stack[n - 1] {
                t @ (V::List(_) | V::Set(_)) => self.arena.extend(t, vec![v])?,
                V::Str(_) if n >= 2 && matches!(self.stack[n - 2], V::Dict(_)) => {
                    let k = self.stack.pop().expect("n >= 2");
                    let d = self.stack[n - 2];
                    self.arena.set_items(d, &[k, v])?;
                }
                _ => {}
            }
        }
        self.stack
            .pop()
            .ok_or_else(|| "the pickle was cut short before it held anything".to_string())
    }
}

fn parse_int(l: &[u8]) -> Option<i128> {
    std::str::from_utf8(l).ok()?.trim().parse::<i128>().ok()
}

/// Protocol 0's `raw-unicode-escape`: bytes are Latin-1, except `\uXXXX` / `\UXXXXXXXX`.
fn raw_unicode_escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let width = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        let hex = b
            .get(i + 2..i + 2 + width)
            .filter(|_| width > 0)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match hex {
            Some(c) => {
                s.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                i += 2 + width;
            }
            None => {
                s.push(b[i] as char);
                i += 1;
            }
        }
    }
    s
}

/// A Python 2 `repr` of a byte string: `'...'` or `"..."` with backslash escapes.
fn python2_repr(l: &[u8]) -> Option<Vec<u8>> {
    let q = *l.first()?;
    if !(q == b'\'' || q == b'"') || l.len() < 2 || l[l.len() - 1] != q {
        return None;
    }
    let body = &l[1..l.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' || i + 1 == body.len() {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let c = body[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let h = body.get(i..i + 2)?;
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
    }
    Some(out)
}
