//! The shared definitions of `schema/defs/` and the `$ref`s that name them:
//! loading, resolving a reference to a definition, and bundling a tool's
//! schema so that `tools/list` serves it self-contained. Part of `build.rs`.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The folder under `schema/` that holds the shared definitions.
pub const DEFS_DIR: &str = "defs";

/// The `*.json` files directly in `dir`, sorted (the order of `tools/list`).
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

pub fn read_json(file: &Path) -> Value {
    println!("cargo:rerun-if-changed={}", file.display());
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// One file of shared definitions.
pub struct DefsFile {
    /// Its path relative to `schema/` (`defs/message.json`), as references spell it.
    pub rel: String,
    /// Its `$defs`, in file order (the order they are bundled and generated in).
    pub defs: Map<String, Value>,
}

/// Every file of shared definitions under `schema/defs/`.
pub struct Shared {
    /// In file name order.
    pub files: Vec<DefsFile>,
}

impl Shared {
    /// Reads `schema/defs/*.json`; a missing folder means no shared definitions.
    /// Definition names are unique across files, since each becomes one type
    /// in `defs` and one key in a bundled `$defs`.
    pub fn load(dir: &Path) -> Shared {
        let mut files = Vec::new();
        if !dir.is_dir() {
            return Shared { files };
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        for path in json_files(dir) {
            let doc = read_json(&path);
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_else(|| panic!("{}: file name is not UTF-8", path.display()));
            let rel = format!("{DEFS_DIR}/{file_name}");
            let obj = doc
                .as_object()
                .unwrap_or_else(|| panic!("schema/{rel}: must be a JSON object"));
            for k in obj.keys() {
                if !["$schema", "$comment", "$defs"].contains(&k.as_str()) {
                    panic!("schema/{rel}: unexpected key {k:?}; a defs file holds only $schema, $comment and $defs");
                }
            }
            let defs = obj
                .get("$defs")
                .and_then(Value::as_object)
                .unwrap_or_else(|| panic!("schema/{rel}: needs a \"$defs\" object"))
                .clone();
            for (name, def) in &defs {
                if let Some((_, other)) = seen.iter().find(|(n, _)| n == name) {
                    panic!("schema/{rel}: definition {name:?} is also in schema/{other}; names must be unique across schema/defs/");
                }
                if def["type"] != "object" || !def["properties"].is_object() {
                    panic!("schema/{rel}: definition {name:?} must be an object schema with properties (it becomes a struct)");
                }
                seen.push((name.clone(), rel.clone()));
            }
            files.push(DefsFile { rel, defs });
        }
        Shared { files }
    }

    /// Resolves a `$ref` written in the schema file `base` (relative to
    /// `schema/`) to (defs file index, definition name), or fails the build
    /// saying what a reference must look like.
    pub fn resolve(&self, base: &str, reference: &str) -> (usize, String) {
        let fail = |why: &str| -> ! {
            panic!("schema/{base}: $ref {reference:?} {why}; refer to shared definitions as \"{DEFS_DIR}/<file>.json#/$defs/<name>\" (from a defs file: \"#/$defs/<name>\" or \"<file>.json#/$defs/<name>\")")
        };
        let (target, pointer) = reference
            .split_once('#')
            .unwrap_or_else(|| fail("has no fragment"));
        let file = if target.is_empty() {
            base.to_string()
        } else {
            if target.contains("..") || target.starts_with('/') || target.contains(':') {
                fail("must be a relative path inside schema/");
            }
            match base.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{target}"),
                None => target.to_string(),
            }
        };
        let index = self
            .files
            .iter()
            .position(|f| f.rel == file)
            .unwrap_or_else(|| fail(&format!("points to schema/{file}, which is not a file of schema/{DEFS_DIR}/ (tool schemas keep no $defs of their own)")));
        let name = pointer
            .strip_prefix("/$defs/")
            .filter(|n| !n.contains('/') && !n.contains('~'))
            .unwrap_or_else(|| fail("must point at one entry of $defs"));
        if !self.files[index].defs.contains_key(name) {
            fail(&format!("names no definition of schema/{file}"));
        }
        (index, name.to_string())
    }

    /// The tool object as `tools/list` serves it: each schema bundled.
    pub fn bundle_tool(&self, base: &str, tool: &Value) -> Value {
        let mut served = tool.clone();
        for key in ["inputSchema", "outputSchema"] {
            if let Some(schema) = served.get_mut(key) {
                self.bundle_schema(base, schema);
            }
        }
        served
    }

    /// Rewrites the references in one schema to `#/$defs/<name>` and appends,
    /// as its `$defs`, the definitions of every defs file it reaches (directly
    /// or through another definition), each file whole and in the order first
    /// reached. Whole files keep a served schema the same whichever of a
    /// file's definitions it happens to name.
    fn bundle_schema(&self, base: &str, schema: &mut Value) {
        if schema.get("$defs").is_some() {
            panic!("schema/{base}: tool schemas keep no $defs of their own; put shared definitions in schema/{DEFS_DIR}/ and refer to them with $ref");
        }
        let mut used: Vec<usize> = Vec::new();
        self.rewrite(base, schema, &mut used);
        let mut bundled = Map::new();
        let mut next = 0;
        while next < used.len() {
            let file = &self.files[used[next]];
            for (name, def) in &file.defs {
                let mut def = def.clone();
                self.rewrite(&file.rel, &mut def, &mut used);
                bundled.insert(name.clone(), def);
            }
            next += 1;
        }
        if let (false, Some(obj)) = (bundled.is_empty(), schema.as_object_mut()) {
            obj.insert("$defs".into(), Value::Object(bundled));
        }
    }

    /// Rewrites every `$ref` under `v` (written in `base`) to its bundled
    /// form and notes the defs files it reaches in `used`.
    fn rewrite(&self, base: &str, v: &mut Value, used: &mut Vec<usize>) {
        match v {
            Value::Object(obj) => {
                for (k, child) in obj.iter_mut() {
                    if k == "$ref" {
                        let reference = child.as_str().unwrap_or_else(|| {
                            panic!("schema/{base}: $ref must be a string, not {child}")
                        });
                        let (index, name) = self.resolve(base, reference);
                        if !used.contains(&index) {
                            used.push(index);
                        }
                        *child = Value::String(format!("#/$defs/{name}"));
                    } else {
                        self.rewrite(base, child, used);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.rewrite(base, item, used);
                }
            }
            _ => {}
        }
    }
}
