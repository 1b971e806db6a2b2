//! One JSON object parsed straight into a `ParquetObject`'s column buffers
//! (serde visitors over the record's bytes: no `serde_json::Value`, keys and
//! strings borrowed from the input where they hold no escapes).

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::{ColType, Column, ParquetObject};

/// Reads one row (a JSON object) into a `ParquetObject`'s columns. A column
/// the row gave a value (or an explicit null) has one more definition level
/// than the object has complete rows.
pub(super) struct RowSeed<'a> {
    pub object: &'a mut ParquetObject,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object (parquet rows are objects)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let Some(i) = self.object.schema.fields.iter().position(|(name, _)| name.as_str() == key.as_str()) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let (name, ty) = &self.object.schema.fields[i];
            let (col, defs) = &mut self.object.columns[i];
            if defs.len() > self.object.rows {
                return Err(de::Error::custom(format!("field \"{}\" appears twice", key.as_str())));
            }
            map.next_value_seed(FieldSeed { name, ty: *ty, col, defs })?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the input unless it holds escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Reads one field's value into its column, checking it fits the column type.
struct FieldSeed<'a> {
    name: &'a str,
    ty: ColType,
    col: &'a mut Column,
    defs: &'a mut Vec<i16>,
}

impl FieldSeed<'_> {
    fn mismatch<E: de::Error>(&self, got: &str) -> E {
        E::custom(format!(
            "field \"{}\" does not fit the parquet column type {} (from parquet.schema or the object's first record): {got}",
            self.name,
            self.ty.name()
        ))
    }
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.ty == ColType::Json {
            // Objects and arrays keep their text as it came; a string is stored unquoted.
            let raw = <&serde_json::value::RawValue as de::Deserialize>::deserialize(d)?;
            let text = raw.get();
            match text.as_bytes().first() {
                Some(b'n') => self.defs.push(0),
                Some(b'"') => {
                    let s: std::borrow::Cow<str> = serde_json::from_str(text).map_err(de::Error::custom)?;
                    self.col.push_bytes(s.as_bytes());
                    self.defs.push(1);
                }
                _ => {
                    self.col.push_bytes(text.as_bytes());
                    self.defs.push(1);
                }
            }
            return Ok(());
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a {} value", self.ty.name())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.defs.push(0);
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match self.col {
            Column::Long(c) => c.push(v),
            Column::Double(c) => c.push(v as f64),
            _ => return Err(self.mismatch(&v.to_string())),
        }
        self.defs.push(1);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match (i64::try_from(v), &mut *self.col) {
            (Ok(v), _) => self.visit_i64(v),
            (Err(_), Column::Double(c)) => {
                c.push(v as f64);
                self.defs.push(1);
                Ok(())
            }
            _ => Err(self.mismatch(&v.to_string())),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        let Column::Double(c) = self.col else { return Err(self.mismatch(&v.to_string())) };
        c.push(v);
        self.defs.push(1);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        let Column::Boolean(c) = self.col else { return Err(self.mismatch(&v.to_string())) };
        c.push(v);
        self.defs.push(1);
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.ty != ColType::String {
            return Err(self.mismatch(&Value::from(v).to_string()));
        }
        self.col.push_bytes(v.as_bytes());
        self.defs.push(1);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.mismatch("an object"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.mismatch("an array"))
    }
}
