//! Order-like JSON records of a chosen size, deterministic per sequence number.
//!
//! Every record has the same keys with the same JSON types (so the s3-sink's
//! parquet schema inferred from an object's first record fits every row):
//! scalars, a nested address object and an array of line items, padded to
//! the requested size with a free-text note.

use std::fmt::Write as _;

const STATUSES: &[&str] = &["CREATED", "PAID", "PICKED", "SHIPPED", "INVOICED", "CANCELLED"];
const CHANNELS: &[&str] = &["web", "app", "store", "callcenter"];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "10115"),
    ("Hamburg", "20095"),
    ("Munich", "80331"),
    ("Cologne", "50667"),
    ("Vienna", "1010"),
    ("Zurich", "8001"),
    ("Paris", "75001"),
    ("Amsterdam", "1012"),
];
const PRODUCTS: &[&str] = &[
    "Trail running shoe",
    "Merino wool sweater",
    "Rain jacket",
    "Leather belt",
    "Cotton t-shirt",
    "Denim jeans",
    "Wool socks (3 pairs)",
    "Baseball cap",
    "Canvas backpack",
    "Insulated bottle",
];
const WORDS: &[&str] = &[
    "please",
    "deliver",
    "after",
    "six",
    "leave",
    "at",
    "the",
    "door",
    "gift",
    "wrap",
    "call",
    "before",
    "ring",
    "twice",
    "neighbour",
    "accepts",
    "parcel",
    "fragile",
    "handle",
    "with",
    "care",
];

/// A small, fast, deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Writes order number `seq` as JSON of exactly `size` bytes when `size` is
/// at least the record's skeleton (about 400 bytes), else as small as it gets.
pub fn order(seq: u64, size: usize, created_ms: i64, out: &mut String) {
    out.clear();
    let mut rng = Rng::new(seq + 1);
    let (city, zip) = CITIES[rng.below(CITIES.len() as u64) as usize];
    let items = 1 + rng.below(3) as usize;
    let secs = created_ms.div_euclid(1000);
    let ms = created_ms.rem_euclid(1000);
    let created = chrono::DateTime::from_timestamp(secs, (ms * 1_000_000) as u32)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    let mut total_cents = 0u64;
    let mut lines = String::new();
    for i in 0..items {
        let qty = 1 + rng.below(4);
        let cents = 499 + rng.below(20_000);
        total_cents += qty * cents;
        if i > 0 {
            lines.push(',');
        }
        let _ = write!(
            lines,
            r#"{{"entryNumber":{i},"sku":"SKU-{:06}","name":"{}","quantity":{qty},"basePrice":{}.{:02}}}"#,
            rng.below(1_000_000),
            rng.pick(PRODUCTS),
            cents / 100,
            cents % 100
        );
    }
    // A fractional part always (".00" included) keeps `total` a JSON double.
    let _ = write!(
        out,
        r#"{{"orderId":"ORD-{seq:012}","customerId":"C-{:08}","createdAt":"{created}","status":"{}","channel":"{}","currency":"EUR","total":{}.{:02},"itemCount":{items},"paid":{},"store":"store-{:03}","shippingAddress":{{"street":"Hauptstrasse {}","city":"{city}","postalCode":"{zip}","country":"DE"}},"entries":[{lines}],"note":""#,
        rng.below(10_000_000),
        rng.pick(STATUSES),
        rng.pick(CHANNELS),
        total_cents / 100,
        total_cents % 100,
        rng.below(2) == 1,
        rng.below(200),
        1 + rng.below(200),
    );
    // Pad with words up to two bytes short of the size, then close.
    let target = size.saturating_sub(2);
    while out.len() < target {
        let word = rng.pick(WORDS);
        let room = target - out.len();
        if room > word.len() {
            out.push_str(word);
            out.push(' ');
        } else {
            out.push_str(&"x".repeat(room));
        }
    }
    out.push_str("\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_size_and_parse() {
        let mut s = String::new();
        for seq in 0..200 {
            order(seq, 1024, 1_700_000_000_123, &mut s);
            assert_eq!(s.len(), 1024, "{s}");
            let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
            assert!(v["total"].is_f64(), "{s}");
            assert_eq!(v["orderId"], format!("ORD-{seq:012}"));
        }
    }
}
