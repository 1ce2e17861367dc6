//! The Sparkplug B payload as protobuf messages: `org.eclipse.tahu.protobuf.Payload`
//! of Eclipse Tahu's `sparkplug_b.proto` (proto2, EPL-2.0; the Sparkplug 3.0
//! specification's normative schema), written as `prost` derive structs so no
//! protobuf compiler runs at build time. Field numbers and types are the
//! schema's; `tests/interop_sparkplug.rs` checks them against payloads that
//! Google's protobuf runtime encodes from the schema as pysparkplug ships it.
//!
//! Rarely set fields are boxed so that a metric costs about 120 bytes in
//! memory: an empty metric is 2 bytes on the wire, and the decode limit
//! (`super::MAX_DECODE_BYTES`) times this ratio bounds what a hostile
//! payload can make us allocate.
//!
//! Only the top level (`Payload`) is not here: `super::decode` walks it by
//! hand so that metrics are decoded and shown one at a time.
//! Extensions (`extension_value`, `extensions N to max`) carry no defined
//! content; prost skips them like any unknown field.

use super::value::Raw;

/// Writes a value `oneof`: the six scalar fields every Sparkplug value
/// message has (only their tags differ), any composite variants after
/// them, and `scalar()`, which reads the scalar ones as a [`Raw`].
macro_rules! value_oneof {
    (
        $(#[$meta:meta])*
        $name:ident {
            $int:literal, $long:literal, $float:literal, $double:literal, $boolean:literal, $string:literal
            $(, $(#[$vmeta:meta])* $variant:ident($ty:ty))* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum $name {
            /// `int_value`: 8 to 32 bit integers (signed ones two's complement).
            #[prost(uint32, tag = $int)]
            Int(u32),
            /// `long_value`: 64 bit integers, DateTime.
            #[prost(uint64, tag = $long)]
            Long(u64),
            /// `float_value`.
            #[prost(float, tag = $float)]
            Float(f32),
            /// `double_value`.
            #[prost(double, tag = $double)]
            Double(f64),
            /// `boolean_value`.
            #[prost(bool, tag = $boolean)]
            Boolean(bool),
            /// `string_value`: String, Text, UUID.
            #[prost(string, tag = $string)]
            String(String),
            $($(#[$vmeta])* $variant($ty),)*
        }

        impl $name {
            /// The scalar field this holds; None for a composite one.
            pub fn scalar(&self) -> Option<Raw<'_>> {
                Some(match self {
                    $name::Int(u) => Raw::Int(*u),
                    $name::Long(u) => Raw::Long(*u),
                    $name::Float(f) => Raw::Float(*f),
                    $name::Double(f) => Raw::Double(*f),
                    $name::Boolean(b) => Raw::Bool(*b),
                    $name::String(s) => Raw::Str(s),
                    #[allow(unreachable_patterns)]
                    _ => return None,
                })
            }
        }
    };
}

/// A metric's identity only, for learning a birth's names without decoding
/// its values (prost skips the other fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricName {
    /// `Metric.name`.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// `Metric.alias`.
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// `Metric.datatype`.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
}

/// `Payload.Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// The name; a DATA message may leave it out and send only the alias.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The alias the birth assigned to the name.
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Milliseconds since the Unix epoch.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// A `DataType` number; DATA messages may leave it to the birth.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    /// Historical values are not the current value.
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    /// Transient metrics are not stored by hosts.
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    /// The value is null (no value field is set).
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    /// Multi-part and file details.
    #[prost(message, optional, boxed, tag = "8")]
    pub metadata: Option<Box<MetaData>>,
    /// Properties such as engineering units or quality.
    #[prost(message, optional, boxed, tag = "9")]
    pub properties: Option<Box<PropertySet>>,
    /// The value, in the field its datatype uses.
    #[prost(oneof = "MetricValue", tags = "10, 11, 12, 13, 14, 15, 16, 17, 18")]
    pub value: Option<MetricValue>,
}

value_oneof! {
    /// `Metric.value`.
    MetricValue {
        "10", "11", "12", "13", "14", "15",
        /// Bytes, File and every array type.
        #[prost(bytes = "vec", tag = "16")]
        Bytes(Vec<u8>),
        /// DataSet.
        #[prost(message, boxed, tag = "17")]
        DataSet(Box<DataSet>),
        /// Template.
        #[prost(message, boxed, tag = "18")]
        Template(Box<Template>),
    }
}

/// `Payload.MetaData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaData {
    /// Part of a multi-part value.
    #[prost(bool, optional, tag = "1")]
    pub is_multi_part: Option<bool>,
    /// MIME type.
    #[prost(string, optional, tag = "2")]
    pub content_type: Option<String>,
    /// Size in bytes.
    #[prost(uint64, optional, tag = "3")]
    pub size: Option<u64>,
    /// Part number of a multi-part value.
    #[prost(uint64, optional, tag = "4")]
    pub seq: Option<u64>,
    /// File name (File).
    #[prost(string, optional, tag = "5")]
    pub file_name: Option<String>,
    /// File type (File).
    #[prost(string, optional, tag = "6")]
    pub file_type: Option<String>,
    /// MD5 of the value.
    #[prost(string, optional, tag = "7")]
    pub md5: Option<String>,
    /// Free text.
    #[prost(string, optional, tag = "8")]
    pub description: Option<String>,
}

/// `Payload.PropertySet`: `keys[i]` names `values[i]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySet {
    /// Property names.
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    /// Property values, in the order of `keys`.
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

/// `Payload.PropertySetList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySetList {
    /// The sets.
    #[prost(message, repeated, tag = "1")]
    pub propertyset: Vec<PropertySet>,
}

/// `Payload.PropertyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    /// A `DataType` number.
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    /// The value is null.
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    /// The value.
    #[prost(oneof = "PropertyValueValue", tags = "3, 4, 5, 6, 7, 8, 9, 10")]
    pub value: Option<PropertyValueValue>,
}

value_oneof! {
    /// `PropertyValue.value`.
    PropertyValueValue {
        "3", "4", "5", "6", "7", "8",
        /// PropertySet.
        #[prost(message, tag = "9")]
        PropertySet(PropertySet),
        /// PropertySetList.
        #[prost(message, tag = "10")]
        PropertySetList(PropertySetList),
    }
}

/// `Payload.DataSet`: a table, each column of one datatype.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataSet {
    /// Number of columns.
    #[prost(uint64, optional, tag = "1")]
    pub num_of_columns: Option<u64>,
    /// Column names.
    #[prost(string, repeated, tag = "2")]
    pub columns: Vec<String>,
    /// Column `DataType` numbers.
    #[prost(uint32, repeated, packed = "false", tag = "3")]
    pub types: Vec<u32>,
    /// The rows.
    #[prost(message, repeated, tag = "4")]
    pub rows: Vec<Row>,
}

/// `DataSet.Row`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Row {
    /// One value per column.
    #[prost(message, repeated, tag = "1")]
    pub elements: Vec<DataSetValue>,
}

/// `DataSet.DataSetValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataSetValue {
    /// The value; none for null.
    #[prost(oneof = "DataSetValueValue", tags = "1, 2, 3, 4, 5, 6")]
    pub value: Option<DataSetValueValue>,
}

value_oneof! {
    /// `DataSetValue.value`.
    DataSetValueValue { "1", "2", "3", "4", "5", "6" }
}

/// `Payload.Template`: a definition (in a birth) or an instance of one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Template {
    /// Template version.
    #[prost(string, optional, tag = "1")]
    pub version: Option<String>,
    /// Member metrics (may hold templates themselves).
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// Parameters.
    #[prost(message, repeated, tag = "3")]
    pub parameters: Vec<Parameter>,
    /// The definition an instance refers to.
    #[prost(string, optional, tag = "4")]
    pub template_ref: Option<String>,
    /// True for a definition, false for an instance.
    #[prost(bool, optional, tag = "5")]
    pub is_definition: Option<bool>,
}

/// `Template.Parameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Parameter {
    /// Name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// A `DataType` number.
    #[prost(uint32, optional, tag = "2")]
    pub r#type: Option<u32>,
    /// The value.
    #[prost(oneof = "ParameterValue", tags = "3, 4, 5, 6, 7, 8")]
    pub value: Option<ParameterValue>,
}

value_oneof! {
    /// `Parameter.value`.
    ParameterValue { "3", "4", "5", "6", "7", "8" }
}
