//! Schemas the derive cannot say exactly, written by hand so that the OpenAPI document accepts
//! what the api accepts and nothing else: an app (its settings are flattened beside its own
//! fields), an app's creation and its JSON merge patch, and the string rules of names.

use signalbox_core::AppSettings;
use utoipa::PartialSchema;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};

/// A name (tenant, app, key): 1-200 characters, no control characters, not only whitespace.
pub(crate) const DISPLAY_NAME_MAX: usize = 200;
const DISPLAY_NAME_PATTERN: &str =
    "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";
/// A key's label: like a display name, but it may be empty.
const LABEL_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

fn string(description: &str, pattern: &str, min: usize, max: usize) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .into()
}

pub(crate) fn display_name() -> Schema {
    string(
        "A display name: 1-200 characters, no control characters, not only whitespace (leading and trailing \
         whitespace is trimmed).",
        DISPLAY_NAME_PATTERN,
        1,
        DISPLAY_NAME_MAX,
    )
}

pub(crate) fn key_label() -> Schema {
    string("A label for humans: at most 200 characters, no control characters.", LABEL_PATTERN, 0, DISPLAY_NAME_MAX)
}

/// Nullable (`null` means the same as leaving it out).
pub(crate) fn or_null(schema: Schema) -> Schema {
    OneOfBuilder::new().item(schema).item(ObjectBuilder::new().schema_type(Type::Null)).into()
}

pub(crate) fn key_label_or_null() -> Schema {
    or_null(key_label())
}

pub(crate) fn permissions() -> Schema {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(RefOr::T(permission()))
        .max_items(Some(64))
        .description(Some("Grants such as `join:room-*`, `leave:lobby`, `publish:room-*` (at most 64)."))
        .into()
}

fn permission() -> Schema {
    string(
        "`join:`, `leave:` or `publish:` and a group pattern (`*` matches any run of characters) of 1-128 characters \
         without control characters.",
        "^(join|leave|publish):[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$",
        6,
        136,
    )
}

fn nullable(schema: RefOr<Schema>) -> RefOr<Schema> {
    OneOfBuilder::new().item(schema).item(ObjectBuilder::new().schema_type(Type::Null)).into()
}

/// The settings' top-level properties (`limits`, `history`, …), each a reference to its schema.
fn settings_properties() -> Vec<(String, RefOr<Schema>)> {
    match AppSettings::schema() {
        RefOr::T(Schema::Object(object)) => object.properties.into_iter().collect(),
        _ => Vec::new(),
    }
}

fn unix_millis() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some("Milliseconds since the Unix epoch."))
}

/// An app as the api answers it: its own fields and every setting, side by side.
pub(crate) fn app() -> Schema {
    let mut builder = ObjectBuilder::new()
        .description(Some("An app and its settings."))
        .property("id", signalbox_core::AppId::schema())
        .required("id")
        .property("name", ObjectBuilder::new().schema_type(Type::String))
        .required("name")
        .property("created_at", unix_millis())
        .required("created_at")
        .property("updated_at", unix_millis())
        .required("updated_at");
    for (name, schema) in settings_properties() {
        builder = builder.property(name.clone(), schema).required(name);
    }
    builder.into()
}

/// An app to create: a name, and any settings (the rest take their defaults).
pub(crate) fn create_app() -> Schema {
    let mut builder = ObjectBuilder::new()
        .description(Some("A name, and any settings (the rest take their defaults)."))
        .examples([serde_json::json!({"name": "chat", "history": {"groups": ["room-*"]}})])
        .property("name", display_name())
        .required("name")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in settings_properties() {
        builder = builder.property(name, schema);
    }
    builder.into()
}

/// A JSON merge patch (RFC 7396) of an app: `name`, and settings to change; `null` resets a
/// setting (or a whole group of settings) to its default.
pub(crate) fn app_patch() -> Schema {
    let mut builder = ObjectBuilder::new()
        .description(Some("`name` and/or settings to merge; `null` resets a setting to its default."))
        .property("name", display_name())
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in settings_properties() {
        builder = builder.property(name, nullable(patch_of(schema)));
    }
    builder.into()
}

/// The merge patch of one settings object: every field optional and nullable.
fn patch_of(schema: RefOr<Schema>) -> RefOr<Schema> {
    let resolved = match schema {
        RefOr::Ref(reference) => settings_component(&reference.ref_location),
        inline => Some(inline),
    };
    match resolved {
        Some(RefOr::T(Schema::Object(mut object))) => {
            object.required.clear();
            object.properties = object.properties.into_iter().map(|(name, field)| (name, nullable(field))).collect();
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            RefOr::T(Schema::Object(object))
        }
        _ => RefOr::T(ObjectBuilder::new().into()),
    }
}

/// The schema of a settings group, from its component reference.
fn settings_component(location: &str) -> Option<RefOr<Schema>> {
    use signalbox_core::settings::{HistorySettings, Limits, PresenceSettings, WebhookSettings};
    let name = location.rsplit('/').next()?;
    Some(match name {
        "Limits" => Limits::schema(),
        "HistorySettings" => HistorySettings::schema(),
        "PresenceSettings" => PresenceSettings::schema(),
        "WebhookSettings" => WebhookSettings::schema(),
        _ => return None,
    })
}
