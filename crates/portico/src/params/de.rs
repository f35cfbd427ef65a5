//! The serde deserializer behind [`QueryDict::deserialize`](super::QueryDict::deserialize): a
//! scalar field reads the last of a name's values, a sequence field reads them all, and a `bool`
//! field reads a checkbox.

use serde::de::DeserializeOwned;

use super::checkbox_ticked;

/// Deserializes name/value pairs into `T`.
pub(super) fn from_pairs<T: DeserializeOwned>(
    pairs: &[(String, String)],
) -> Result<T, serde_json::Error> {
    // A map of name -> string or list of strings: serde's untagged handling then lets a
    // `Vec<String>` field take one or many values and a `String` field take the last.
    let mut map = serde_json::Map::new();
    for (name, value) in pairs {
        match map.get_mut(name) {
            None => {
                map.insert(name.clone(), serde_json::Value::String(value.clone()));
            }
            Some(existing) => {
                let mut list = match existing.take() {
                    serde_json::Value::Array(a) => a,
                    other => vec![other],
                };
                list.push(serde_json::Value::String(value.clone()));
                *existing = serde_json::Value::Array(list);
            }
        }
    }
    T::deserialize(FormMap(map))
}

/// A map deserializer that lets a scalar field read the last of several values and a sequence
/// field read one value as a list of one.
struct FormMap(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserializer<'de> for FormMap {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::value::MapDeserializer;
        let iter = self.0.into_iter().map(|(k, v)| (k, FormValue(v)));
        visitor.visit_map(MapDeserializer::new(iter))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The values of one name: a string, or a list of strings when the name repeated.
struct FormValue(serde_json::Value);

impl<'de> serde::de::IntoDeserializer<'de, serde_json::Error> for FormValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl FormValue {
    fn last_string(self) -> String {
        match self.0 {
            serde_json::Value::String(s) => s,
            serde_json::Value::Array(mut a) => match a.pop() {
                Some(serde_json::Value::String(s)) => s,
                _ => String::new(),
            },
            _ => String::new(),
        }
    }
}

macro_rules! parse_scalar {
    ($($method:ident => $visit:ident : $ty:ty),* $(,)?) => {
        $(
            fn $method<V: serde::de::Visitor<'de>>(
                self,
                visitor: V,
            ) -> Result<V::Value, Self::Error> {
                let s = self.last_string();
                match s.trim().parse::<$ty>() {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(serde::de::Error::custom(format!(
                        "\"{s}\" is not a valid number"
                    ))),
                }
            }
        )*
    };
}

impl<'de> serde::Deserializer<'de> for FormValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_string(self.last_string())
    }

    fn deserialize_seq<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let items: Vec<FormValue> = match self.0 {
            serde_json::Value::Array(a) => a.into_iter().map(FormValue).collect(),
            other => vec![FormValue(other)],
        };
        visitor.visit_seq(serde::de::value::SeqDeserializer::new(items.into_iter()))
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_bool<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // The same rule as `QueryDict::checked`, so a form reads a checkbox alike typed or not.
        visitor.visit_bool(checkbox_ticked(Some(&self.last_string())))
    }

    parse_scalar! {
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
        deserialize_f32 => visit_f32: f32, deserialize_f64 => visit_f64: f64,
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
