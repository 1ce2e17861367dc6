//! Sparkplug `DataType` numbers and their names, as the specification
//! (and Tahu's `sparkplug_b.proto` enum `DataType`) defines them.

/// Writes the enum, the table in wire order and the names from one list,
/// so a number, a variant and a name cannot drift apart.
macro_rules! datatypes {
    ($($variant:ident = $name:literal,)+) => {
        /// A Sparkplug datatype; its discriminant is its number on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)] // the names are the specification's
        pub enum DataType {
            $($variant,)+
        }

        /// Every datatype in the order of its number (index = number).
        const ALL: &[DataType] = &[$(DataType::$variant,)+];

        impl DataType {
            /// The specification's name (`UUID` is spelled as there).
            pub fn name(self) -> &'static str {
                match self {
                    $(DataType::$variant => $name,)+
                }
            }
        }
    };
}

datatypes! {
    Unknown = "Unknown",
    Int8 = "Int8",
    Int16 = "Int16",
    Int32 = "Int32",
    Int64 = "Int64",
    UInt8 = "UInt8",
    UInt16 = "UInt16",
    UInt32 = "UInt32",
    UInt64 = "UInt64",
    Float = "Float",
    Double = "Double",
    Boolean = "Boolean",
    String = "String",
    DateTime = "DateTime",
    Text = "Text",
    Uuid = "UUID",
    DataSet = "DataSet",
    Bytes = "Bytes",
    File = "File",
    Template = "Template",
    PropertySet = "PropertySet",
    PropertySetList = "PropertySetList",
    Int8Array = "Int8Array",
    Int16Array = "Int16Array",
    Int32Array = "Int32Array",
    Int64Array = "Int64Array",
    UInt8Array = "UInt8Array",
    UInt16Array = "UInt16Array",
    UInt32Array = "UInt32Array",
    UInt64Array = "UInt64Array",
    FloatArray = "FloatArray",
    DoubleArray = "DoubleArray",
    BooleanArray = "BooleanArray",
    StringArray = "StringArray",
    DateTimeArray = "DateTimeArray",
}

impl DataType {
    /// The datatype with this number; None for numbers the specification
    /// does not define.
    pub fn from_code(code: u32) -> Option<DataType> {
        ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// Its number on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Every datatype, in the order of its number.
    pub fn all() -> &'static [DataType] {
        ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_positions() {
        for (i, dt) in DataType::all().iter().enumerate() {
            assert_eq!(dt.code() as usize, i);
            assert_eq!(DataType::from_code(i as u32), Some(*dt));
        }
        assert_eq!(DataType::from_code(35), None);
        assert_eq!(DataType::from_code(u32::MAX), None);
        assert_eq!(DataType::Uuid.name(), "UUID");
    }
}
