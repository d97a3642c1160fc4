//! PostgreSQL values (binary wire format) → columnar chunks that JavaScript turns into rows.
//!
//! A column of a chunk is a handful of flat buffers (numbers in an `f64` vector, all text of the
//! column in one string with UTF-16 offsets, …), so crossing into JavaScript costs a few calls per
//! column instead of one per value.

use crate::error::Error;
use postgres_protocol::types as wire;
use std::fmt::Write;
use tokio_postgres::types::{Kind as PgKind, Type};

/// How JavaScript materialises a column; the numbers are part of the contract with `index.js`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `numbers[i]`.
    Number = 0,
    /// `text.substring(offsets[i], offsets[i + 1])`.
    Text = 1,
    /// `numbers[i] !== 0`.
    Bool = 2,
    /// `new Date(numbers[i])` (±Infinity for PostgreSQL's infinities).
    Timestamp = 3,
    /// `JSON.parse` of the text slice.
    Json = 4,
    /// `bytes.subarray(offsets[i], offsets[i + 1])`.
    Bytes = 5,
    /// `bigints[i]`.
    BigInt = 6,
    /// `JSON.parse` of the text slice, then elements fixed up by `elem`.
    Array = 7,
    /// A `timestamp without time zone`: wall-clock time read in the local time zone, as pg does.
    LocalTimestamp = 8,
    /// A `date`: `numbers[i]` days since 1970-01-01 (±Infinity), local midnight in JavaScript.
    Date = 9,
    /// An `interval`: its text, parsed into an interval object in JavaScript.
    Interval = 10,
    /// A `point`: its text, parsed into `{ x, y }` in JavaScript.
    Point = 11,
    /// A `circle`: its text, parsed into `{ x, y, radius }` in JavaScript.
    Circle = 12,
}

impl Kind {
    /// Whether values of this kind travel as text (offsets into one string).
    pub fn is_text(self) -> bool {
        matches!(self, Kind::Text | Kind::Json | Kind::Array | Kind::Interval | Kind::Point | Kind::Circle)
    }
    /// Whether values of this kind travel as numbers.
    pub fn is_number(self) -> bool {
        matches!(self, Kind::Number | Kind::Bool | Kind::Timestamp | Kind::LocalTimestamp | Kind::Date)
    }
}

/// Per-client decoding choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// int8 as JavaScript `bigint` instead of a decimal string.
    pub int8_as_bigint: bool,
    /// int8 as a JavaScript number (pg's `defaults.parseInt8`), precision lost past 2^53.
    pub int8_as_number: bool,
}

/// How one column's values are decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoder {
    Bool,
    Int2,
    Int4,
    Oid,
    /// A 32-bit unsigned value read as its decimal text (`xid`, `cid`: pg leaves them as text).
    Uint32Text,
    Int8Text,
    Int8Number,
    Int8Big,
    Float4,
    Float8,
    Numeric,
    Utf8,
    Char,
    Uuid,
    Json,
    Jsonb,
    Bytea,
    Timestamptz,
    Timestamp,
    Date,
    Time,
    Timetz,
    Interval,
    Inet,
    Macaddr,
    Bit,
    Money,
    Point,
    Lseg,
    Box,
    Line,
    Circle,
    Lsn,
    Tid,
    Xid8,
    Array(Box<Decoder>),
    /// PostgreSQL's own text output, written from the binary form (`pgtext`): for columns with a
    /// custom type parser, and types pg hands over as text that have no decoder here.
    ServerText(Box<Type>),
    /// Text that arrived as text (simple protocol), for a column of another text-borne kind.
    TextAs(Kind),
    /// A type without a known binary form: text when the bytes are UTF-8, else `\x` hex.
    Fallback,
    /// A column whose text only the server can write (see [`Decoder::needs_server`]), of a type it
    /// can always cast back (reg*, tsvector, tsquery and their arrays): its values
    /// are kept as they arrived and made text once the result is complete
    /// ([`ColumnChunk::render`]), by the server when it can be asked, else as [`Decoder::Fallback`].
    ByServer,
}

/// Array types whose text pg-types 2.x parses by default; pg hands any other array over as the
/// server's text (`{a,b}`).
const PARSED_ARRAYS: &[u32] = &[
    651, 1000, 1001, 1005, 1007, 1028, 1016, 1017, 1021, 1022, 1231, 1014, 1015, 1008, 1009, 1040, 1041, 1115, 1182,
    1185, 1187, 199, 3807, 3907, 2951, 791, 1183, 1270,
];

impl Decoder {
    /// The decoder for a result column: PostgreSQL's text when `text_oids` names its type (a
    /// custom parser in JavaScript will read it), else the type's own.
    pub fn for_column(ty: &Type, opts: DecodeOptions, text_oids: &std::collections::HashSet<u32>) -> Decoder {
        if text_oids.contains(&ty.oid()) && crate::pgtext::has_server_text(ty) {
            return Decoder::ServerText(Box::new(ty.clone()));
        }
        Decoder::for_type(ty, opts)
    }

    /// Values as pg (with pg-types 2.x's default parsers) hands them to JavaScript.
    pub fn for_type(ty: &Type, opts: DecodeOptions) -> Decoder {
        match *ty {
            Type::BOOL => Decoder::Bool,
            Type::INT2 => Decoder::Int2,
            Type::INT4 => Decoder::Int4,
            Type::OID => Decoder::Oid,
            Type::XID | Type::CID => Decoder::Uint32Text,
            Type::INT8 if opts.int8_as_bigint => Decoder::Int8Big,
            Type::INT8 if opts.int8_as_number => Decoder::Int8Number,
            Type::INT8 => Decoder::Int8Text,
            Type::FLOAT4 => Decoder::Float4,
            Type::FLOAT8 => Decoder::Float8,
            Type::NUMERIC => Decoder::Numeric,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML => Decoder::Utf8,
            Type::CHAR => Decoder::Char,
            Type::UUID => Decoder::Uuid,
            Type::JSON => Decoder::Json,
            Type::JSONB => Decoder::Jsonb,
            Type::BYTEA => Decoder::Bytea,
            Type::TIMESTAMPTZ => Decoder::Timestamptz,
            Type::TIMESTAMP => Decoder::Timestamp,
            Type::DATE => Decoder::Date,
            Type::TIME => Decoder::Time,
            Type::TIMETZ => Decoder::Timetz,
            Type::INTERVAL => Decoder::Interval,
            Type::INET | Type::CIDR => Decoder::Inet,
            Type::MACADDR | Type::MACADDR8 => Decoder::Macaddr,
            Type::BIT | Type::VARBIT => Decoder::Bit,
            Type::MONEY => Decoder::Money,
            Type::POINT => Decoder::Point,
            Type::LSEG => Decoder::Lseg,
            Type::BOX => Decoder::Box,
            Type::LINE => Decoder::Line,
            Type::CIRCLE => Decoder::Circle,
            Type::PG_LSN => Decoder::Lsn,
            Type::TID => Decoder::Tid,
            Type::XID8 => Decoder::Xid8,
            _ => match ty.kind() {
                PgKind::Array(elem) if PARSED_ARRAYS.contains(&ty.oid()) => {
                    Decoder::Array(Box::new(Decoder::for_type(elem, opts)))
                }
                PgKind::Array(_) | PgKind::Range(_) if crate::pgtext::has_server_text(ty) => {
                    Decoder::ServerText(Box::new(ty.clone()))
                }
                PgKind::Domain(base) => Decoder::for_type(base, opts),
                PgKind::Enum(_) => Decoder::Utf8,
                _ if ty.name() == "citext" => Decoder::Utf8,
                _ if crate::pgtext::has_server_text(ty) => Decoder::ServerText(Box::new(ty.clone())),
                _ => Decoder::Fallback,
            },
        }
    }

    /// Whether the text pg would hand over for this column can only come from the server: reg*
    /// types print catalog names, and tsvector, tsquery, aclitem and extensions' types have no
    /// binary form known here (also as elements of a registered array such as regproc[]). Which of
    /// them the server is asked about is `query.rs`'s call.
    pub fn needs_server(&self) -> bool {
        match self {
            Decoder::Fallback => true,
            Decoder::Array(e) => e.needs_server(),
            _ => false,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Decoder::Bool => Kind::Bool,
            Decoder::Int2 | Decoder::Int4 | Decoder::Oid | Decoder::Float4 | Decoder::Float8 | Decoder::Int8Number => {
                Kind::Number
            }
            Decoder::Date => Kind::Date,
            Decoder::TextAs(k) => *k,
            Decoder::Interval => Kind::Interval,
            Decoder::Point => Kind::Point,
            Decoder::Circle => Kind::Circle,
            Decoder::Int8Big => Kind::BigInt,
            Decoder::Json | Decoder::Jsonb => Kind::Json,
            Decoder::Bytea => Kind::Bytes,
            Decoder::Timestamptz => Kind::Timestamp,
            Decoder::Timestamp => Kind::LocalTimestamp,
            Decoder::Array(_) => Kind::Array,
            _ => Kind::Text,
        }
    }

    /// For arrays: how JavaScript fixes up the parsed elements.
    pub fn element_kind(&self) -> Option<Kind> {
        match self {
            // pg-types reads numeric[] elements with parseFloat.
            Decoder::Array(e) if **e == Decoder::Numeric => Some(Kind::Number),
            Decoder::Array(e) => Some(e.kind()),
            _ => None,
        }
    }
}

fn bad(what: &str) -> Error {
    Error::Protocol { detail: format!("malformed {what} value from the server") }
}

fn fixed<const N: usize>(raw: &[u8], what: &str) -> Result<[u8; N], Error> {
    raw.try_into().map_err(|_| bad(what))
}

/// pg_type.typlen of `ty`: what node-postgres reports as a field's `dataTypeSize`.
pub fn type_size(ty: &Type) -> i16 {
    match *ty {
        Type::BOOL | Type::CHAR => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::OID | Type::XID | Type::CID | Type::FLOAT4 | Type::DATE | Type::REGPROC => 4,
        Type::REGPROCEDURE | Type::REGOPER | Type::REGOPERATOR | Type::REGCLASS | Type::REGTYPE => 4,
        Type::REGCONFIG | Type::REGDICTIONARY | Type::REGNAMESPACE | Type::REGROLE | Type::VOID => 4,
        Type::TID | Type::MACADDR => 6,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::MONEY => 8,
        Type::PG_LSN | Type::MACADDR8 | Type::XID8 => 8,
        Type::TIMETZ => 12,
        Type::POINT | Type::INTERVAL | Type::UUID => 16,
        Type::LINE | Type::CIRCLE => 24,
        Type::LSEG | Type::BOX => 32,
        Type::NAME => 64,
        Type::CSTRING => -2,
        _ => match ty.kind() {
            PgKind::Enum(_) => 4,
            PgKind::Domain(base) => type_size(base),
            _ => -1,
        },
    }
}

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MS: f64 = 946_684_800_000.0;

pub fn timestamp_ms(raw: &[u8]) -> Result<f64, Error> {
    let us = i64::from_be_bytes(fixed(raw, "timestamp")?);
    Ok(match us {
        i64::MAX => f64::INFINITY,
        i64::MIN => f64::NEG_INFINITY,
        us => us.div_euclid(1000) as f64 + PG_EPOCH_MS,
    })
}

fn float(raw: &[u8], d: &Decoder) -> Result<f64, Error> {
    Ok(match d {
        Decoder::Int2 => i16::from_be_bytes(fixed(raw, "int2")?) as f64,
        Decoder::Int4 => i32::from_be_bytes(fixed(raw, "int4")?) as f64,
        Decoder::Oid => u32::from_be_bytes(fixed(raw, "oid")?) as f64,
        // Via the shortest decimal form, so 1.1::float4 reads as 1.1, as it prints in psql.
        Decoder::Float4 => {
            let f = f32::from_be_bytes(fixed(raw, "float4")?);
            if f.is_finite() {
                ryu::Buffer::new().format_finite(f).parse().unwrap_or(f as f64)
            } else {
                f as f64
            }
        }
        Decoder::Float8 => f64::from_be_bytes(fixed(raw, "float8")?),
        Decoder::Int8Number => i64::from_be_bytes(fixed(raw, "int8")?) as f64,
        Decoder::Date => match i32::from_be_bytes(fixed(raw, "date")?) {
            i32::MAX => f64::INFINITY,
            i32::MIN => f64::NEG_INFINITY,
            d => d as f64 + 10_957.0,
        },
        _ => unreachable!("not a number decoder"),
    })
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (year 0 is 1 BC).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends `v` in decimal, zero-padded to at least `width` digits: what `write!(out, "{v:0width$}")`
/// gives, without the formatting machinery (it was a large share of dates', numerics' and int8s'
/// cost).
pub fn push_uint(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let from = i.min(buf.len().saturating_sub(width));
    out.push_str(std::str::from_utf8(&buf[from..]).expect("ASCII digits"));
}

/// Appends `v` in decimal.
pub fn push_int(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_uint(out, v.unsigned_abs(), 1);
}

pub fn write_date(out: &mut String, raw: &[u8]) -> Result<(), Error> {
    let days = i32::from_be_bytes(fixed(raw, "date")?);
    match days {
        i32::MAX => out.push_str("infinity"),
        i32::MIN => out.push_str("-infinity"),
        d => {
            let (y, m, day) = civil_from_days(d as i64 + 10_957);
            push_uint(out, if y > 0 { y } else { 1 - y }.unsigned_abs(), 4);
            out.push('-');
            push_uint(out, m.into(), 2);
            out.push('-');
            push_uint(out, day.into(), 2);
            if y <= 0 {
                out.push_str(" BC");
            }
        }
    }
    Ok(())
}

/// `HH:MM:SS[.ffffff]` with trailing zeros of the fraction dropped, as PostgreSQL prints it.
fn write_clock(out: &mut String, us: i64) {
    let us = us.unsigned_abs();
    let (h, rest) = (us / 3_600_000_000, us % 3_600_000_000);
    let (m, rest) = (rest / 60_000_000, rest % 60_000_000);
    let (s, frac) = (rest / 1_000_000, rest % 1_000_000);
    push_uint(out, h, 2);
    out.push(':');
    push_uint(out, m, 2);
    out.push(':');
    push_uint(out, s, 2);
    write_fraction(out, frac);
}

fn write_fraction(out: &mut String, frac: u64) {
    if frac != 0 {
        let (mut f, mut width) = (frac, 6);
        while f % 10 == 0 {
            f /= 10;
            width -= 1;
        }
        out.push('.');
        push_uint(out, f, width);
    }
}

pub fn write_time(out: &mut String, raw: &[u8]) -> Result<(), Error> {
    write_clock(out, i64::from_be_bytes(fixed(raw, "time")?));
    Ok(())
}

pub fn write_timetz(out: &mut String, raw: &[u8]) -> Result<(), Error> {
    let raw: [u8; 12] = fixed(raw, "timetz")?;
    let us = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    // PostgreSQL stores the offset in seconds west of UTC.
    let west = i32::from_be_bytes(raw[8..].try_into().expect("4 bytes"));
    write_clock(out, us);
    let east = -(west as i64);
    let (sign, a) = if east < 0 { ('-', -east) } else { ('+', east) };
    let _ = write!(out, "{sign}{:02}", a / 3600);
    if a % 3600 != 0 {
        let _ = write!(out, ":{:02}", (a % 3600) / 60);
        if a % 60 != 0 {
            let _ = write!(out, ":{:02}", a % 60);
        }
    }
    Ok(())
}

/// PostgreSQL's default (`IntervalStyle = postgres`) text form.
pub fn write_interval(out: &mut String, raw: &[u8]) -> Result<(), Error> {
    let raw: [u8; 16] = fixed(raw, "interval")?;
    let time = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    let days = i32::from_be_bytes(raw[8..12].try_into().expect("4 bytes")) as i64;
    let months = i32::from_be_bytes(raw[12..].try_into().expect("4 bytes")) as i64;
    let (mut is_zero, mut is_before) = (true, false);
    for (value, unit) in [(months / 12, "year"), (months % 12, "mon"), (days, "day")] {
        if value == 0 {
            continue;
        }
        let sep = if is_zero { "" } else { " " };
        let plus = if is_before && value > 0 { "+" } else { "" };
        let plural = if value != 1 { "s" } else { "" };
        let _ = write!(out, "{sep}{plus}{value} {unit}{plural}");
        is_before = value < 0;
        is_zero = false;
    }
    if is_zero || time != 0 {
        let sign = if time < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        out.push_str(if is_zero { "" } else { " " });
        out.push_str(sign);
        write_clock(out, time);
    }
    Ok(())
}

pub fn write_numeric(out: &mut String, raw: &[u8]) -> Result<(), Error> {
    if raw.len() < 8 || !(raw.len() - 8).is_multiple_of(2) {
        return Err(bad("numeric"));
    }
    let be16 = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    let ndigits = be16(0) as usize;
    let weight = be16(2) as i16 as i64;
    let sign = be16(4);
    let dscale = be16(6) as usize;
    if raw.len() != 8 + 2 * ndigits {
        return Err(bad("numeric"));
    }
    let special = match sign {
        0xC000 => Some("NaN"),
        0xD000 => Some("Infinity"),
        0xF000 => Some("-Infinity"),
        0x0000 | 0x4000 => None,
        _ => return Err(bad("numeric")),
    };
    if let Some(s) = special {
        out.push_str(s);
        return Ok(());
    }
    let digit = |i: i64| -> u16 {
        if i >= 0 && (i as usize) < ndigits {
            be16(8 + 2 * i as usize)
        } else {
            0
        }
    };
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            push_uint(out, digit(i).into(), if i == 0 { 1 } else { 4 });
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut i = weight + 1;
        while out.len() - start < dscale {
            push_uint(out, digit(i).into(), 4);
            i += 1;
        }
        out.truncate(start + dscale);
    }
    Ok(())
}

pub fn write_uuid(out: &mut String, raw: &[u8]) -> Result<(), Error> {
    let b: [u8; 16] = fixed(raw, "uuid")?;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        // Two table look-ups per byte: formatting machinery here was most of a uuid column's cost.
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 0xf) as usize] as char);
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_inet(out: &mut String, raw: &[u8]) -> Result<(), Error> {
    if raw.len() < 4 {
        return Err(bad("inet"));
    }
    let (family, bits, is_cidr, len) = (raw[0], raw[1], raw[2] != 0, raw[3] as usize);
    let addr = &raw[4..];
    if addr.len() != len {
        return Err(bad("inet"));
    }
    let max = match (family, len) {
        (2, 4) => {
            let _ = write!(out, "{}", std::net::Ipv4Addr::from(fixed::<4>(addr, "inet")?));
            32
        }
        (3, 16) => {
            let _ = write!(out, "{}", std::net::Ipv6Addr::from(fixed::<16>(addr, "inet")?));
            128
        }
        _ => return Err(bad("inet")),
    };
    if is_cidr || bits != max {
        let _ = write!(out, "/{bits}");
    }
    Ok(())
}

fn write_bits(out: &mut String, raw: &[u8]) -> Result<(), Error> {
    if raw.len() < 4 {
        return Err(bad("bit"));
    }
    let n = i32::from_be_bytes(fixed(&raw[..4], "bit")?).max(0) as usize;
    let data = &raw[4..];
    if data.len() * 8 < n {
        return Err(bad("bit"));
    }
    for i in 0..n {
        out.push(if data[i / 8] & (0x80 >> (i % 8)) != 0 { '1' } else { '0' });
    }
    Ok(())
}

/// `money` as PostgreSQL prints it in the C locale (what DSQL and default servers use).
fn write_money(out: &mut String, cents: i64) {
    if cents < 0 {
        out.push('-');
    }
    let c = cents.unsigned_abs();
    let whole = (c / 100).to_string();
    out.push('$');
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    let _ = write!(out, ".{:02}", c % 100);
}

fn write_geometry(out: &mut String, d: &Decoder, raw: &[u8]) -> Result<(), Error> {
    let count = match d {
        Decoder::Point => 2,
        Decoder::Line | Decoder::Circle => 3,
        _ => 4,
    };
    if raw.len() != count * 8 {
        return Err(bad("geometric"));
    }
    let v: Vec<f64> = raw.chunks_exact(8).map(|c| f64::from_be_bytes(c.try_into().expect("8 bytes"))).collect();
    let _ = match d {
        Decoder::Point => write!(out, "({},{})", v[0], v[1]),
        Decoder::Line => write!(out, "{{{},{},{}}}", v[0], v[1], v[2]),
        Decoder::Circle => write!(out, "<({},{}),{}>", v[0], v[1], v[2]),
        Decoder::Lseg => write!(out, "[({},{}),({},{})]", v[0], v[1], v[2], v[3]),
        _ => write!(out, "({},{}),({},{})", v[0], v[1], v[2], v[3]),
    };
    Ok(())
}

fn write_hex(out: &mut String, raw: &[u8]) {
    out.reserve(raw.len() * 2);
    for b in raw {
        let _ = write!(out, "{b:02x}");
    }
}

fn utf8<'a>(raw: &'a [u8], what: &str) -> Result<&'a str, Error> {
    std::str::from_utf8(raw).map_err(|_| bad(what))
}

/// Appends the text form of a value whose column kind is `Text`.
pub fn write_text(out: &mut String, d: &Decoder, raw: &[u8]) -> Result<(), Error> {
    match d {
        Decoder::Utf8 | Decoder::TextAs(_) => out.push_str(utf8(raw, "text")?),
        Decoder::Char => match raw.first() {
            // PostgreSQL prints a high-bit "char" as a backslash and three octal digits.
            Some(&c) if c >= 0x80 => {
                let _ = write!(out, "\\{c:03o}");
            }
            Some(&c) if c != 0 => out.push(c as char),
            _ => {}
        },
        Decoder::Int8Text => push_int(out, i64::from_be_bytes(fixed(raw, "int8")?)),
        Decoder::Uint32Text => push_uint(out, u32::from_be_bytes(fixed(raw, "xid")?).into(), 1),
        Decoder::ServerText(ty) => crate::pgtext::write_server_text(out, ty, raw, 0)?,
        Decoder::Numeric => write_numeric(out, raw)?,
        Decoder::Uuid => write_uuid(out, raw)?,
        Decoder::Date => write_date(out, raw)?,
        Decoder::Time => write_time(out, raw)?,
        Decoder::Timetz => write_timetz(out, raw)?,
        Decoder::Interval => write_interval(out, raw)?,
        Decoder::Inet => write_inet(out, raw)?,
        Decoder::Macaddr => {
            for (i, b) in raw.iter().enumerate() {
                if i > 0 {
                    out.push(':');
                }
                let _ = write!(out, "{b:02x}");
            }
        }
        Decoder::Bit => write_bits(out, raw)?,
        Decoder::Money => write_money(out, i64::from_be_bytes(fixed(raw, "money")?)),
        // PostgreSQL's float output (NaN, Infinity, shortest digits) for the coordinates.
        Decoder::Point => crate::pgtext::write_server_text(out, &Type::POINT, raw, 0)?,
        Decoder::Circle => crate::pgtext::write_server_text(out, &Type::CIRCLE, raw, 0)?,
        Decoder::Lseg | Decoder::Box | Decoder::Line => write_geometry(out, d, raw)?,
        Decoder::Lsn => {
            let v = u64::from_be_bytes(fixed(raw, "pg_lsn")?);
            let _ = write!(out, "{:X}/{:X}", v >> 32, v & 0xffff_ffff);
        }
        Decoder::Tid => {
            let t: [u8; 6] = fixed(raw, "tid")?;
            let block = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
            let _ = write!(out, "({block},{})", u16::from_be_bytes([t[4], t[5]]));
        }
        Decoder::Xid8 => {
            let _ = write!(out, "{}", u64::from_be_bytes(fixed(raw, "xid8")?));
        }
        // Types whose binary form is their text (extensions' string types, enums of unknown
        // oid) read as text; anything else is shown as hex rather than as garbled characters.
        Decoder::Fallback => match std::str::from_utf8(raw) {
            Ok(s) if !s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) => out.push_str(s),
            _ => {
                out.push_str("\\x");
                write_hex(out, raw);
            }
        },
        _ => unreachable!("not a text decoder: {d:?}"),
    }
    Ok(())
}

fn json_text<'a>(d: &Decoder, raw: &'a [u8]) -> Result<&'a str, Error> {
    match d {
        Decoder::Jsonb => match raw.split_first() {
            Some((1, rest)) => utf8(rest, "jsonb"),
            _ => Err(bad("jsonb")),
        },
        _ => utf8(raw, "json"),
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_number(out: &mut String, n: f64) {
    if n.is_finite() {
        let _ = write!(out, "{n}");
    } else {
        // JSON has no NaN or Infinity: JavaScript turns these strings back into numbers.
        out.push_str(if n.is_nan() {
            "\"NaN\""
        } else if n > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    }
}

/// Appends one array element as JSON.
fn write_json_element(out: &mut String, d: &Decoder, raw: &[u8], scratch: &mut String) -> Result<(), Error> {
    match d.kind() {
        Kind::Number | Kind::Date => json_number(out, float(raw, d)?),
        Kind::Bool => out.push_str(if raw.first().copied().unwrap_or(0) != 0 { "true" } else { "false" }),
        Kind::Timestamp | Kind::LocalTimestamp => json_number(out, timestamp_ms(raw)?),
        Kind::Json => out.push_str(json_text(d, raw)?),
        Kind::Bytes => {
            out.push('"');
            write_hex(out, raw);
            out.push('"');
        }
        Kind::BigInt => {
            let _ = write!(out, "\"{}\"", i64::from_be_bytes(fixed(raw, "int8")?));
        }
        Kind::Array => write_array_json(out, d.element_kind().map(|_| d).expect("array"), raw, scratch)?,
        Kind::Text | Kind::Interval | Kind::Point | Kind::Circle => {
            scratch.clear();
            write_text(scratch, d, raw)?;
            // numeric[] elements are numbers in JavaScript: a finite one is already a JSON number.
            if *d == Decoder::Numeric && scratch.bytes().last().is_some_and(|b| b.is_ascii_digit()) {
                out.push_str(scratch);
            } else {
                json_string(out, scratch);
            }
        }
    }
    Ok(())
}

/// PostgreSQL's limit on array dimensions (MAXDIM).
const MAX_ARRAY_DIMENSIONS: usize = 6;

/// A PostgreSQL array (up to 6 dimensions) as nested JSON arrays.
pub fn write_array_json(out: &mut String, d: &Decoder, raw: &[u8], scratch: &mut String) -> Result<(), Error> {
    let Decoder::Array(elem) = d else { unreachable!("not an array decoder") };
    let array = wire::array_from_sql(raw).map_err(|_| bad("array"))?;
    let dims: Vec<usize> = {
        use fallible_iterator::FallibleIterator;
        array.dimensions().map(|d| Ok(d.len.max(0) as usize)).collect().map_err(|_| bad("array"))?
    };
    // PostgreSQL allows 6 dimensions and reads any zero-length dimension as an empty array: a
    // crafted header must neither recurse without bound nor expand into millions of empty arrays.
    if dims.len() > MAX_ARRAY_DIMENSIONS {
        return Err(bad("array (too many dimensions)"));
    }
    if dims.is_empty() || dims.contains(&0) {
        out.push_str("[]");
        return Ok(());
    }
    let mut values = array.values();
    write_dimension(out, elem, &dims, &mut values, scratch)
}

fn write_dimension(
    out: &mut String,
    elem: &Decoder,
    dims: &[usize],
    values: &mut wire::ArrayValues<'_>,
    scratch: &mut String,
) -> Result<(), Error> {
    use fallible_iterator::FallibleIterator;
    out.push('[');
    for i in 0..dims[0] {
        if i > 0 {
            out.push(',');
        }
        if dims.len() > 1 {
            write_dimension(out, elem, &dims[1..], values, scratch)?;
        } else {
            match values.next().map_err(|_| bad("array"))? {
                Some(Some(raw)) => write_json_element(out, elem, raw, scratch)?,
                Some(None) => out.push_str("null"),
                None => return Err(bad("array")),
            }
        }
    }
    out.push(']');
    Ok(())
}

/// For results of the simple protocol (text format): the decoder a column of type `d` is built
/// with, and [`text_to_wire`] turns each text value into that decoder's input.
pub fn text_decoder(d: &Decoder) -> Decoder {
    match d {
        Decoder::Bool
        | Decoder::Int8Text
        | Decoder::Int8Big
        | Decoder::Bytea
        | Decoder::Timestamptz
        | Decoder::Timestamp
        | Decoder::Date => d.clone(),
        Decoder::Interval | Decoder::Point | Decoder::Circle => Decoder::TextAs(d.kind()),
        Decoder::Int2 | Decoder::Int4 | Decoder::Oid | Decoder::Float4 | Decoder::Float8 | Decoder::Int8Number => {
            Decoder::Float8
        }
        Decoder::Json | Decoder::Jsonb => Decoder::Json,
        // Everything else is wanted in PostgreSQL's own text form, which is what arrived.
        _ => Decoder::Utf8,
    }
}

/// A text-format value → the binary form [`text_decoder`]'s decoder reads.
pub fn text_to_wire(d: &Decoder, text: &str) -> Result<Vec<u8>, Error> {
    let wrong = || bad("text-format");
    Ok(match d {
        Decoder::Bool => vec![u8::from(text == "t")],
        Decoder::Float8 => text.parse::<f64>().map_err(|_| wrong())?.to_be_bytes().to_vec(),
        Decoder::Int8Text | Decoder::Int8Big => text.parse::<i64>().map_err(|_| wrong())?.to_be_bytes().to_vec(),
        Decoder::Bytea => {
            let hex = text.strip_prefix("\\x").ok_or_else(wrong)?;
            (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(wrong))
                .collect::<Result<_, _>>()?
        }
        Decoder::Timestamptz | Decoder::Timestamp => parse_timestamp_us(text).ok_or_else(wrong)?.to_be_bytes().to_vec(),
        Decoder::Date => {
            let days = match text {
                "infinity" => i32::MAX,
                "-infinity" => i32::MIN,
                _ => {
                    let (day, bc) = text.strip_suffix(" BC").map_or((text, ""), |d| (d, " BC"));
                    let us = parse_timestamp_us(&format!("{day} 00:00:00{bc}")).ok_or_else(wrong)?;
                    i32::try_from(us.div_euclid(86_400_000_000)).map_err(|_| wrong())?
                }
            };
            days.to_be_bytes().to_vec()
        }
        _ => text.as_bytes().to_vec(),
    })
}

/// PostgreSQL's ISO timestamp output → microseconds since 2000-01-01 UTC (a `timestamp` without
/// zone is taken as UTC wall-clock time, as its binary form is). `None` for anything PostgreSQL
/// does not print, fields out of range included: the arithmetic is checked, never wraps.
fn parse_timestamp_us(text: &str) -> Option<i64> {
    match text {
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let within = |v: i64, lo: i64, hi: i64| (lo..=hi).contains(&v).then_some(v);
    let (date, rest) = text.split_once(' ')?;
    let mut ymd = date.splitn(3, '-');
    let year: i64 = ymd.next()?.parse().ok()?;
    let month = within(ymd.next()?.parse().ok()?, 1, 12)?;
    let day = within(ymd.next()?.parse().ok()?, 1, 31)?;
    let year = if bc { 1i64.checked_sub(year)? } else { year };
    let zone_at = rest.find(['+', '-']);
    let (clock, zone) = match zone_at {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let mut hms = clock.splitn(3, ':');
    let h = within(hms.next()?.parse().ok()?, 0, 24)?;
    let m = within(hms.next()?.parse().ok()?, 0, 59)?;
    let sec = hms.next()?;
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let s = within(whole.parse().ok()?, 0, 60)?;
    let micros: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").get(..6)?.parse().ok()? };
    let offset_secs = match zone {
        None => 0,
        Some(z) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let mut parts = z[1..].split(':').map(|p| p.parse::<i64>().ok());
            let hh = within(parts.next()??, 0, 99)?;
            let mm = within(parts.next().flatten().unwrap_or(0), 0, 59)?;
            let ss = within(parts.next().flatten().unwrap_or(0), 0, 59)?;
            sign * (hh * 3600 + mm * 60 + ss)
        }
    };
    // Days from civil (proleptic Gregorian), 1970-01-01 = 0.
    let y = if month <= 2 { year.checked_sub(1)? } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era.checked_mul(146_097)?.checked_add(yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468)?;
    let unix_secs = days.checked_mul(86_400)?.checked_add(h * 3600 + m * 60 + s - offset_secs)?;
    unix_secs.checked_sub(946_684_800)?.checked_mul(1_000_000)?.checked_add(micros)
}

/// One finished column of a chunk. Only the buffers its kind uses are filled.
#[derive(Debug, Default)]
pub struct ColumnChunk {
    pub kind: Option<Kind>,
    pub element: Option<Kind>,
    /// 1 where the value is NULL; absent when the chunk has no NULL in this column.
    pub nulls: Option<Vec<u8>>,
    pub numbers: Vec<f64>,
    pub bigints: Vec<i64>,
    pub text: String,
    /// UTF-16 offsets into `text` (or byte offsets into `bytes`), one more than there are rows.
    pub offsets: Vec<u32>,
    pub bytes: Vec<u8>,
    /// Values of a [`Decoder::ByServer`] column, still as they arrived: in `bytes`, with byte
    /// offsets; [`ColumnChunk::render`] turns them into text before the chunk is handed over.
    pub unrendered: bool,
}

impl ColumnChunk {
    /// The values of an unrendered column as they arrived, row by row (`None` for NULL).
    pub fn raw_values(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        self.offsets.windows(2).enumerate().map(|(i, w)| {
            let null = self.nulls.as_ref().is_some_and(|n| n[i] == 1);
            (!null).then(|| &self.bytes[w[0] as usize..w[1] as usize])
        })
    }

    /// Makes an unrendered column text: row by row from `texts` (the server's text of each value
    /// that is not NULL, in order), or, without them, as [`Decoder::Fallback`] shows such bytes.
    pub fn render(&mut self, texts: Option<Vec<String>>) -> Result<(), Error> {
        if !self.unrendered {
            return Ok(());
        }
        let mut texts = texts.map(Vec::into_iter);
        let mut b = ColumnBuilder::new(if texts.is_some() { Decoder::Utf8 } else { Decoder::Fallback });
        for raw in self.raw_values() {
            match (raw, texts.as_mut()) {
                (None, _) => b.push(None)?,
                (Some(_), Some(t)) => {
                    let text = t.next().ok_or_else(|| bad("server text (fewer values than rows)"))?;
                    b.push(Some(text.as_bytes()))?
                }
                (Some(raw), None) => b.push(Some(raw))?,
            }
        }
        *self = b.take();
        Ok(())
    }
}

/// Accumulates one column of a chunk.
pub struct ColumnBuilder {
    decoder: Decoder,
    out: ColumnChunk,
    rows: usize,
    utf16_len: u32,
    scratch: String,
}

impl ColumnBuilder {
    pub fn new(decoder: Decoder) -> ColumnBuilder {
        let mut out = ColumnChunk {
            kind: Some(decoder.kind()),
            element: decoder.element_kind(),
            unrendered: decoder == Decoder::ByServer,
            ..Default::default()
        };
        if decoder.kind().is_text() || decoder.kind() == Kind::Bytes {
            out.offsets.push(0);
        }
        ColumnBuilder { decoder, out, rows: 0, utf16_len: 0, scratch: String::new() }
    }

    /// Bytes held so far (to bound a chunk's size).
    pub fn size(&self) -> usize {
        self.out.text.len() + self.out.bytes.len() + 8 * (self.out.numbers.len() + self.out.bigints.len())
    }

    pub fn push(&mut self, raw: Option<&[u8]>) -> Result<(), Error> {
        // An unrendered column holds bytes, whatever kind it will have.
        let kind = if self.out.unrendered { Kind::Bytes } else { self.decoder.kind() };
        match raw {
            None => {
                self.out.nulls.get_or_insert_with(|| vec![0; self.rows]).push(1);
                match kind {
                    k if k.is_number() => self.out.numbers.push(0.0),
                    Kind::BigInt => self.out.bigints.push(0),
                    Kind::Bytes => self.out.offsets.push(self.out.bytes.len() as u32),
                    _ => self.out.offsets.push(self.utf16_len),
                }
            }
            Some(raw) => {
                if let Some(n) = self.out.nulls.as_mut() {
                    n.push(0);
                }
                match kind {
                    Kind::Number | Kind::Date => self.out.numbers.push(float(raw, &self.decoder)?),
                    Kind::Bool => self.out.numbers.push(if raw.first().copied().unwrap_or(0) != 0 { 1.0 } else { 0.0 }),
                    Kind::Timestamp | Kind::LocalTimestamp => self.out.numbers.push(timestamp_ms(raw)?),
                    Kind::BigInt => self.out.bigints.push(i64::from_be_bytes(fixed(raw, "int8")?)),
                    Kind::Bytes => {
                        self.out.bytes.extend_from_slice(raw);
                        let end = u32::try_from(self.out.bytes.len()).map_err(|_| bad("bytea (chunk too large)"))?;
                        self.out.offsets.push(end);
                    }
                    _ => {
                        let start = self.out.text.len();
                        match kind {
                            Kind::Json => self.out.text.push_str(json_text(&self.decoder, raw)?),
                            Kind::Array => write_array_json(&mut self.out.text, &self.decoder, raw, &mut self.scratch)?,
                            _ => write_text(&mut self.out.text, &self.decoder, raw)?,
                        }
                        let added = &self.out.text[start..];
                        let units = if added.is_ascii() { added.len() } else { added.encode_utf16().count() };
                        self.utf16_len = u32::try_from(self.utf16_len as usize + units)
                            .map_err(|_| bad("text (chunk too large)"))?;
                        self.out.offsets.push(self.utf16_len);
                    }
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Hands over the chunk so far and starts an empty one.
    pub fn take(&mut self) -> ColumnChunk {
        let fresh = ColumnBuilder::new(self.decoder.clone());
        let old = std::mem::replace(self, fresh);
        old.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(d: Decoder, raw: &[u8]) -> String {
        let mut s = String::new();
        write_text(&mut s, &d, raw).unwrap();
        s
    }

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics() {
        assert_eq!(text(Decoder::Numeric, &numeric(2, 0, 0, 2, &[123, 4500])), "123.45");
        assert_eq!(text(Decoder::Numeric, &numeric(1, -1, 0x4000, 3, &[5])), "-0.000");
        assert_eq!(text(Decoder::Numeric, &numeric(1, -2, 0, 8, &[12])), "0.00000012");
        assert_eq!(text(Decoder::Numeric, &numeric(1, 1, 0, 0, &[1])), "10000");
        assert_eq!(text(Decoder::Numeric, &numeric(0, 0, 0, 0, &[])), "0");
        assert_eq!(text(Decoder::Numeric, &numeric(0, 0, 0xC000, 0, &[])), "NaN");
        assert_eq!(text(Decoder::Numeric, &numeric(0, 0, 0xF000, 0, &[])), "-Infinity");
        assert!(write_numeric(&mut String::new(), &[0, 1]).is_err());
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(text(Decoder::Date, &0i32.to_be_bytes()), "2000-01-01");
        assert_eq!(text(Decoder::Date, &(-10_957i32).to_be_bytes()), "1970-01-01");
        assert_eq!(text(Decoder::Date, &8_825i32.to_be_bytes()), "2024-02-29");
        assert_eq!(text(Decoder::Date, &i32::MAX.to_be_bytes()), "infinity");
        // 0001-12-31 BC is the day before 0001-01-01 (day -730119 from 2000-01-01).
        assert_eq!(text(Decoder::Date, &(-730_119i32).to_be_bytes()), "0001-01-01");
        assert_eq!(text(Decoder::Date, &(-730_120i32).to_be_bytes()), "0001-12-31 BC");
        let t = (13 * 3600 + 4 * 60 + 5) as i64 * 1_000_000 + 500_000;
        assert_eq!(text(Decoder::Time, &t.to_be_bytes()), "13:04:05.5");
        let mut tz = t.to_be_bytes().to_vec();
        tz.extend_from_slice(&(-19_800i32).to_be_bytes()); // +05:30
        assert_eq!(text(Decoder::Timetz, &tz), "13:04:05.5+05:30");
        assert_eq!(timestamp_ms(&0i64.to_be_bytes()).unwrap(), 946_684_800_000.0);
        assert_eq!(timestamp_ms(&(-1i64).to_be_bytes()).unwrap(), 946_684_799_999.0);
        assert_eq!(timestamp_ms(&i64::MAX.to_be_bytes()).unwrap(), f64::INFINITY);
    }

    fn interval(us: i64, days: i32, months: i32) -> String {
        let mut v = us.to_be_bytes().to_vec();
        v.extend_from_slice(&days.to_be_bytes());
        v.extend_from_slice(&months.to_be_bytes());
        text(Decoder::Interval, &v)
    }

    #[test]
    fn intervals_as_postgres_prints_them() {
        assert_eq!(interval(0, 0, 0), "00:00:00");
        assert_eq!(interval(3_723_000_000, 3, 14), "1 year 2 mons 3 days 01:02:03");
        assert_eq!(interval(0, 1, 1), "1 mon 1 day");
        assert_eq!(interval(-1_000_000, 0, 0), "-00:00:01");
        assert_eq!(interval(1_500_000, -2, 0), "-2 days +00:00:01.5");
        assert_eq!(interval(0, 0, -13), "-1 years -1 mons");
    }

    #[test]
    fn uuids_inet_bits() {
        let u: Vec<u8> = (0u8..16).collect();
        assert_eq!(text(Decoder::Uuid, &u), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(text(Decoder::Inet, &[2, 32, 0, 4, 10, 0, 0, 1]), "10.0.0.1");
        assert_eq!(text(Decoder::Inet, &[2, 24, 1, 4, 10, 0, 0, 0]), "10.0.0.0/24");
        let mut v6 = vec![3, 128, 0, 16];
        v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        assert_eq!(text(Decoder::Inet, &v6), "::1");
        assert_eq!(text(Decoder::Bit, &[0, 0, 0, 5, 0b1010_1000]), "10101");
        assert_eq!(text(Decoder::Fallback, b"plain"), "plain");
        assert_eq!(text(Decoder::Fallback, &[0xff, 0x00]), "\\xff00");
        assert_eq!(text(Decoder::Fallback, &[0, 0, 1]), "\\x000001");
        assert_eq!(text(Decoder::Money, &(-123_456_789i64).to_be_bytes()), "-$1,234,567.89");
        assert_eq!(text(Decoder::Money, &5i64.to_be_bytes()), "$0.05");
        let mut p = 1.5f64.to_be_bytes().to_vec();
        p.extend_from_slice(&(-2.0f64).to_be_bytes());
        assert_eq!(text(Decoder::Point, &p), "(1.5,-2)");
        assert_eq!(text(Decoder::Char, &[0xc3]), "\\303");
        assert_eq!(text(Decoder::Lsn, &0x0000_0001_0000_00ffu64.to_be_bytes()), "1/FF");
        assert_eq!(float(&1.1f32.to_be_bytes(), &Decoder::Float4).unwrap(), 1.1);
    }

    #[test]
    fn text_format_values() {
        let us = |t: &str| parse_timestamp_us(t).unwrap();
        assert_eq!(us("2000-01-01 00:00:00+00"), 0);
        assert_eq!(us("2000-01-01 05:30:00.5+05:30"), 500_000);
        assert_eq!(us("1999-12-31 23:59:59.999999"), -1);
        assert_eq!(us("1970-01-01 00:00:00-01"), (3600 - 946_684_800) * 1_000_000);
        assert_eq!(us("infinity"), i64::MAX);
        assert!(parse_timestamp_us("yesterday").is_none());
        // PostgreSQL's range ends in 294276 AD; its extremes still fit, anything past is refused.
        assert_eq!(us("294276-12-31 23:59:59.999999"), 9_223_371_331_199_999_999);
        assert_eq!(us("4714-11-24 00:00:00+00 BC"), -211_813_488_000_000_000);
        for t in ["0-0-0 0:100000000000:0", "9223372036854775807-01-01 00:00:00", "1-01-01 00:00:00 BC+99999999999"] {
            assert_eq!(text_to_wire(&Decoder::Timestamp, t).unwrap_err().code(), "PROTOCOL_ERROR", "{t}");
        }
        assert!(parse_timestamp_us("-9223372036854775808-01-01 00:00:00 BC").is_none());
        assert_eq!(text_to_wire(&Decoder::Bytea, "\\x01ff").unwrap(), vec![1, 255]);
        assert_eq!(text_to_wire(&Decoder::Float8, "NaN").unwrap(), f64::NAN.to_be_bytes().to_vec());
        assert_eq!(text_decoder(&Decoder::Int4), Decoder::Float8);
        assert_eq!(text_decoder(&Decoder::Numeric), Decoder::Utf8);
    }

    #[test]
    fn columns_track_utf16_offsets_and_nulls() {
        let mut b = ColumnBuilder::new(Decoder::Utf8);
        b.push(Some("a".as_bytes())).unwrap();
        b.push(None).unwrap();
        b.push(Some("é😀".as_bytes())).unwrap();
        let c = b.take();
        assert_eq!(c.kind, Some(Kind::Text));
        assert_eq!(c.text, "aé😀");
        assert_eq!(c.offsets, vec![0, 1, 1, 4]);
        assert_eq!(c.nulls, Some(vec![0, 1, 0]));
        let mut n = ColumnBuilder::new(Decoder::Int4);
        n.push(Some(&7i32.to_be_bytes())).unwrap();
        let c = n.take();
        assert_eq!(c.numbers, vec![7.0]);
        assert!(c.nulls.is_none());
        assert!(n.take().numbers.is_empty());
    }

    #[test]
    fn arrays_become_json() {
        let mut buf = bytes::BytesMut::new();
        wire::array_to_sql(
            [wire::ArrayDimension { len: 2, lower_bound: 1 }, wire::ArrayDimension { len: 2, lower_bound: 1 }],
            25,
            ["a", "b\"", "ü", ""].iter().map(|s| s.as_bytes()),
            |e, buf| {
                buf.extend_from_slice(e);
                Ok(postgres_protocol::IsNull::No)
            },
            &mut buf,
        )
        .unwrap();
        let mut out = String::new();
        write_array_json(&mut out, &Decoder::Array(Box::new(Decoder::Utf8)), &buf, &mut String::new()).unwrap();
        assert_eq!(out, r#"[["a","b\""],["ü",""]]"#);
    }

    fn int_array_header(dims: &[(i32, i32)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(dims.len() as i32).to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&23u32.to_be_bytes());
        for (len, lb) in dims {
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&lb.to_be_bytes());
        }
        v
    }

    #[test]
    fn crafted_array_headers_neither_recurse_nor_amplify() {
        let d = Decoder::Array(Box::new(Decoder::Int4));
        let mut out = String::new();
        write_array_json(&mut out, &d, &int_array_header(&[(10_000_000, 1), (0, 1)]), &mut String::new()).unwrap();
        assert_eq!(out, "[]");
        let deep: Vec<(i32, i32)> = (0..100_000).map(|_| (1, 1)).collect();
        assert!(write_array_json(&mut String::new(), &d, &int_array_header(&deep), &mut String::new()).is_err());
    }
}

#[cfg(test)]
mod fuzz {
    // Property tests for the value decoders: every `Decoder` variant fed arbitrary bytes (what a
    // broken or hostile server could send in a DataRow) never panics, never hangs, and keeps the
    // column's buffers consistent; arrays with crafted headers stay bounded in time and output.

    use super::{ColumnBuilder, Decoder, Kind};
    use crate::testing::cases;
    use crate::value;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};
    use tokio_postgres::types::Type;

    /// Every scalar variant. The match has no wildcard, so a new variant fails to compile here
    /// until it is added to the fuzzing.
    fn scalar_decoders() -> Vec<Decoder> {
        let all = vec![
            Decoder::Bool,
            Decoder::Int2,
            Decoder::Int4,
            Decoder::Oid,
            Decoder::Int8Text,
            Decoder::Int8Big,
            Decoder::Float4,
            Decoder::Float8,
            Decoder::Numeric,
            Decoder::Utf8,
            Decoder::Char,
            Decoder::Uuid,
            Decoder::Json,
            Decoder::Jsonb,
            Decoder::Bytea,
            Decoder::Timestamptz,
            Decoder::Timestamp,
            Decoder::Date,
            Decoder::Time,
            Decoder::Timetz,
            Decoder::Interval,
            Decoder::Inet,
            Decoder::Macaddr,
            Decoder::Bit,
            Decoder::Money,
            Decoder::Point,
            Decoder::Lseg,
            Decoder::Box,
            Decoder::Line,
            Decoder::Circle,
            Decoder::Lsn,
            Decoder::Tid,
            Decoder::Xid8,
            Decoder::Uint32Text,
            Decoder::Int8Number,
            Decoder::ServerText(Box::new(Type::INT4_RANGE)),
            Decoder::ServerText(Box::new(Type::TS_VECTOR)),
            Decoder::ServerText(Box::new(Type::NAME_ARRAY)),
            Decoder::ServerText(Box::new(Type::RECORD)),
            Decoder::ServerText(Box::new(Type::TIMESTAMPTZ)),
            Decoder::TextAs(Kind::Interval),
            Decoder::Fallback,
        ];
        for d in &all {
            match d {
                Decoder::Bool
                | Decoder::Int2
                | Decoder::Int4
                | Decoder::Oid
                | Decoder::Int8Text
                | Decoder::Int8Big
                | Decoder::Float4
                | Decoder::Float8
                | Decoder::Numeric
                | Decoder::Utf8
                | Decoder::Char
                | Decoder::Uuid
                | Decoder::Json
                | Decoder::Jsonb
                | Decoder::Bytea
                | Decoder::Timestamptz
                | Decoder::Timestamp
                | Decoder::Date
                | Decoder::Time
                | Decoder::Timetz
                | Decoder::Interval
                | Decoder::Inet
                | Decoder::Macaddr
                | Decoder::Bit
                | Decoder::Money
                | Decoder::Point
                | Decoder::Lseg
                | Decoder::Box
                | Decoder::Line
                | Decoder::Circle
                | Decoder::Lsn
                | Decoder::Tid
                | Decoder::Xid8
                | Decoder::Uint32Text
                | Decoder::Int8Number
                | Decoder::ServerText(_)
                | Decoder::TextAs(_)
                | Decoder::Fallback => {}
                // Never written: rendered by the server, or as Fallback.
                Decoder::Array(_) | Decoder::ByServer => unreachable!(),
            }
        }
        all
    }

    /// Scalars, their arrays, and arrays of arrays.
    fn decoder() -> impl Strategy<Value = Decoder> {
        let scalars = scalar_decoders();
        let scalar = proptest::sample::select(scalars);
        prop_oneof![
            4 => scalar.clone(),
            3 => scalar.clone().prop_map(|d| Decoder::Array(Box::new(d))),
            1 => scalar.prop_map(|d| Decoder::Array(Box::new(Decoder::Array(Box::new(d))))),
        ]
    }

    /// Raw values: random bytes, the right sizes, and special patterns.
    fn raw() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..48),
            proptest::collection::vec(any::<u8>(), 0..600),
            prop_oneof![Just(1usize), Just(2), Just(4), Just(6), Just(8), Just(12), Just(16), Just(24), Just(32)]
                .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n)),
            prop_oneof![Just(1usize), Just(2), Just(4), Just(8), Just(12), Just(16)].prop_flat_map(|n| prop_oneof![
                Just(vec![0xff; n]),
                Just(vec![0x80; n]),
                Just(vec![0x7f; n]),
                Just(vec![0; n])
            ]),
            "\\PC{0,40}".prop_map(String::into_bytes),
        ]
    }

    /// A binary array header (ndim, flags, element oid, dims) followed by element bytes, the way
    /// PostgreSQL writes them, with each field free to be absurd. Also returns the claimed dimensions.
    fn crafted_array() -> impl Strategy<Value = (Vec<u8>, Vec<i32>)> {
        let dim = prop_oneof![4 => 0i32..4, 1 => Just(-1), 1 => Just(65_536), 1 => Just(1_000), 2 => 0i32..100];
        (
            prop_oneof![0i32..7, Just(-1), Just(7), Just(100)],
            any::<i32>(),
            proptest::collection::vec((dim, any::<i32>()), 0..7),
            proptest::collection::vec(prop_oneof![Just(-1i32), 0i32..10, Just(i32::MAX), Just(i32::MIN)], 0..12),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(ndim, flags, dims, lens, tail)| {
                let mut b = Vec::new();
                b.extend_from_slice(&ndim.to_be_bytes());
                b.extend_from_slice(&flags.to_be_bytes());
                b.extend_from_slice(&23i32.to_be_bytes());
                for (len, lower) in &dims {
                    b.extend_from_slice(&len.to_be_bytes());
                    b.extend_from_slice(&lower.to_be_bytes());
                }
                let mut tail = tail.into_iter();
                for len in lens {
                    b.extend_from_slice(&len.to_be_bytes());
                    for _ in 0..len.clamp(0, 8) {
                        b.push(tail.next().unwrap_or(0));
                    }
                }
                (b, dims.into_iter().map(|(len, _)| len).collect())
            })
    }

    /// Loop iterations a naive decoder spends on the claimed dimensions (sum of the products of
    /// their prefixes), to keep generated cases from running for minutes.
    fn claimed_work(dims: &[i32]) -> f64 {
        let (mut product, mut sum) = (1f64, 0f64);
        for &d in dims {
            product *= d.max(0) as f64;
            sum += product;
        }
        sum
    }

    /// Bytes of output a value may produce per byte of input, plus a constant: numeric's weight
    /// and scale fields legitimately expand 8 bytes into ~160 KiB of digits.
    const AMPLIFICATION: usize = 64;
    const AMPLIFICATION_SLACK: usize = 256 << 10;

    /// Pushes every value into a column and checks the column stays consistent.
    fn feed(d: &Decoder, values: &[Option<Vec<u8>>]) -> Result<(), TestCaseError> {
        let mut b = ColumnBuilder::new(d.clone());
        let mut pushed = 0usize;
        let mut input = 0usize;
        let started = Instant::now();
        for v in values {
            input += v.as_ref().map_or(0, Vec::len);
            if b.push(v.as_deref()).is_ok() {
                pushed += 1;
            } else {
                // After an error the query fails as a whole and the builder is dropped.
                return Ok(());
            }
        }
        prop_assert!(started.elapsed() < Duration::from_secs(2), "{d:?} took {:?}", started.elapsed());
        prop_assert!(
            b.size() <= AMPLIFICATION * input + AMPLIFICATION_SLACK,
            "{d:?}: {} bytes out of {input}",
            b.size()
        );
        let chunk = b.take();
        prop_assert_eq!(chunk.kind, Some(d.kind()));
        if let Some(n) = &chunk.nulls {
            prop_assert_eq!(n.len(), pushed);
        }
        match d.kind() {
            k if k.is_number() => prop_assert_eq!(chunk.numbers.len(), pushed),
            Kind::BigInt => prop_assert_eq!(chunk.bigints.len(), pushed),
            Kind::Bytes => {
                prop_assert_eq!(chunk.offsets.len(), pushed + 1);
                prop_assert_eq!(*chunk.offsets.last().unwrap() as usize, chunk.bytes.len());
            }
            _ => {
                prop_assert_eq!(chunk.offsets.len(), pushed + 1);
                // Offsets are UTF-16 positions: JavaScript slices the column's one string with them.
                prop_assert_eq!(*chunk.offsets.last().unwrap() as usize, chunk.text.encode_utf16().count());
                prop_assert!(chunk.offsets.windows(2).all(|w| w[0] <= w[1]));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(cases(3000))]

        #[test]
        fn any_bytes_into_any_decoder(d in decoder(), values in proptest::collection::vec(proptest::option::weighted(0.9, raw()), 1..6)) {
            feed(&d, &values)?;
        }
    }

    proptest! {
        #![proptest_config(cases(1500))]

        #[test]
        fn crafted_arrays(elem in proptest::sample::select(scalar_decoders()), nested in any::<bool>(), (a, dims) in crafted_array()) {
            prop_assume!(claimed_work(&dims) <= 4e6);
            let d = if nested { Decoder::Array(Box::new(Decoder::Array(Box::new(elem)))) } else { Decoder::Array(Box::new(elem)) };
            feed(&d, &[Some(a)])?;
        }

        /// Text-format values (the simple protocol) into the decoders they are built with.
        #[test]
        fn text_format_values(d in decoder(), text in prop_oneof![
            any::<String>(),
            "-?[0-9]{1,25}(\\.[0-9]{0,8})?",
            "\\\\x[0-9a-fA-F]{0,9}",
            "(in|-in)finity",
            // Timestamps, with years and clock fields far outside what PostgreSQL prints.
            "-?[0-9]{1,20}-[0-9]{1,20}-[0-9]{1,20} [0-9]{1,20}:[0-9]{1,20}:[0-9]{1,20}(\\.[0-9]{0,9})?([+-][0-9]{1,20}(:[0-9]{1,20}){0,2})?( BC)?",
        ]) {
            let td = value::text_decoder(&d);
            if let Ok(raw) = value::text_to_wire(&td, &text) {
                feed(&td, &[Some(raw)])?;
            }
        }
    }

    /// An array header may claim a huge outer dimension over an empty inner one: there are no
    /// elements, so nothing bounds the loop but the claim. 28 bytes must not become megabytes of
    /// output (or, with i32::MAX, gigabytes and minutes).
    #[test]
    fn an_array_header_cannot_amplify_into_a_huge_output() {
        let mut raw = Vec::new();
        for v in [2i32, 0, 23, 10_000_000, 1, 0, 1] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        let mut b = ColumnBuilder::new(Decoder::Array(Box::new(Decoder::Int4)));
        let started = Instant::now();
        let r = b.push(Some(&raw));
        let out = b.size();
        assert!(
            r.is_err() || out <= AMPLIFICATION * raw.len() + AMPLIFICATION_SLACK,
            "{} bytes of input became {out} bytes of output in {:?}",
            raw.len(),
            started.elapsed()
        );
    }

    /// PostgreSQL arrays have at most 6 dimensions; a header claiming thousands (each of length 1)
    /// must be refused, not decoded by recursion deep enough to overflow a thread's stack (which
    /// aborts the process: no panic handler can catch it). Runs on a thread with tokio's default
    /// worker stack size, where the addon decodes.
    #[test]
    fn an_array_with_absurdly_many_dimensions_is_refused_without_deep_recursion() {
        let dims: i32 = 100_000;
        let mut raw = Vec::new();
        for v in [dims, 0, 23] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        for _ in 0..dims {
            raw.extend_from_slice(&1i32.to_be_bytes());
            raw.extend_from_slice(&1i32.to_be_bytes());
        }
        raw.extend_from_slice(&4i32.to_be_bytes());
        raw.extend_from_slice(&7i32.to_be_bytes());
        let worker = std::thread::Builder::new().stack_size(2 << 20).spawn(move || {
            let mut b = ColumnBuilder::new(Decoder::Array(Box::new(Decoder::Int4)));
            b.push(Some(&raw)).is_err()
        });
        let refused = worker.expect("spawn").join().expect("no panic");
        assert!(refused, "an array with {dims} dimensions was accepted");
    }
}
