//! Batch manifests, as documents: the facts the worker keeps for each delivered file of
//! a batch ([`FileFacts`], stored by the spool as opaque bytes), and the manifest made of
//! them once every file of the batch was delivered ([`render`]) in the server's format —
//! outpost's own JSON, or Adobe Audience Manager's transfer-control (`.info`) shape.
//! Pure: no I/O, no clock. Touch this to change what a manifest says; when it is
//! uploaded is the worker's business.

use outpost_config::{Manifest, ManifestFormat};
use serde::{Deserialize, Serialize};

/// What is known of one delivered file of a batch: written by the worker after the
/// store's acknowledgement (`Spool::batch_file_delivered`), read back for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    /// The object's key.
    pub key: String,
    /// Relative path below the server folder (`<batch>/…`).
    pub relative_path: String,
    /// Bytes delivered.
    pub size: u64,
    /// CRC64NVME of the whole file, base64 (as S3 reports full-object checksums), so a
    /// customer can check every object alike whatever the configured checksum.
    pub crc64nvme: String,
    /// The whole-object checksum's algorithm as S3 names it (`CRC32C`, `CRC64NVME`,
    /// `MD5`): the configured header's where one is computed, else CRC-64/NVME (always
    /// computed while reading; `signed_payload`, multipart `md5`).
    pub checksum_algorithm: String,
    /// Its value (base64).
    pub checksum: String,
    /// The ETag the store answered.
    pub etag: String,
    /// The version id, when the bucket is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// When the store acknowledged it (RFC 3339).
    pub delivered_at: String,
    /// The claim's sequence number (claim order of its daemon): kept for the ledger; the
    /// manifest numbers files 1..n by relative path instead, the same on every render.
    pub seq: u64,
    /// MD5 of the whole file, lowercase hex (counted while reading, for `aam-info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_hex: Option<String>,
    /// Lines in the file (`\n` counted while reading, for `aam-info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

impl FileFacts {
    /// The bytes the spool keeps.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and numbers always encodes")
    }

    /// Facts read back from the spool.
    pub fn from_bytes(bytes: &[u8]) -> Result<FileFacts, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The file's name within its batch folder (`a.csv`, `sub/c.csv`).
    fn name_in(&self, batch: &str) -> &str {
        self.relative_path
            .strip_prefix(batch)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(&self.relative_path)
    }
}

/// Why no manifest can be made from the facts at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// `aam-info` needs each file's MD5 and line count, and these facts lack one: the
    /// file was delivered without them being counted (a made-up value would mislead).
    Missing {
        /// Relative path of the file.
        file: String,
        /// `md5` or `lines`.
        what: &'static str,
    },
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Missing { file, what } => {
                write!(
                    f,
                    "{file}: delivered without its {what}, which aam-info needs"
                )
            }
        }
    }
}

impl std::error::Error for RenderError {}

/// Whether the worker must count MD5 and lines while reading a file for `format`.
pub fn needs_md5_and_lines(format: ManifestFormat) -> bool {
    format == ManifestFormat::AamInfo
}

/// The manifest's key for `batch`: `<prefix><batch>/<name>`.
pub fn key(prefix: &str, manifest: &Manifest, batch: &str) -> String {
    format!("{prefix}{batch}/{}", manifest.name_for(batch))
}

/// outpost's JSON manifest.
#[derive(Serialize)]
struct JsonManifest<'a> {
    batch: &'a str,
    producer: &'a str,
    version: &'a str,
    files: Vec<JsonFile<'a>>,
    totals: JsonTotals,
}

/// One file in outpost's JSON manifest.
#[derive(Serialize)]
struct JsonFile<'a> {
    /// 1..n by relative path.
    sequence: u64,
    key: &'a str,
    name: &'a str,
    size: u64,
    crc64nvme: &'a str,
    checksum_algorithm: &'a str,
    checksum: &'a str,
    etag: &'a str,
    version_id: Option<&'a str>,
    delivered_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<u64>,
}

#[derive(Serialize)]
struct JsonTotals {
    files: u64,
    bytes: u64,
}

/// Adobe Audience Manager's transfer-control file: field names and order as Adobe
/// documents them ("Transfer-Control Files for Log File Transfers").
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AamInfo<'a> {
    files: Vec<AamFile<'a>>,
    totals: AamTotals<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AamFile<'a> {
    file_byte_size: u64,
    file_line_count: u64,
    file_name: &'a str,
    file_sequence_number: u64,
    #[serde(rename = "md5")]
    md5: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AamTotals<'a> {
    /// The batch (Adobe's "root of the batch/sequence").
    file_name: &'a str,
    total_byte_size: u64,
    total_number_files: u64,
    total_number_lines: u64,
}

/// The manifest of `batch` in `format`, made by `producer` `version`, listing `files`
/// (in any order: listed by relative path, numbered from 1). The manifest itself is
/// not among the files it counts. Pretty-printed JSON ending in a newline.
pub fn render(
    format: ManifestFormat,
    batch: &str,
    producer: &str,
    version: &str,
    files: &[FileFacts],
) -> Result<Vec<u8>, RenderError> {
    let mut files: Vec<&FileFacts> = files.iter().collect();
    files.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    let numbered = (1u64..).zip(files.iter().copied());
    let mut out = match format {
        ManifestFormat::Json => {
            let doc = JsonManifest {
                batch,
                producer,
                version,
                files: numbered
                    .map(|(sequence, f)| JsonFile {
                        sequence,
                        key: &f.key,
                        name: f.name_in(batch),
                        size: f.size,
                        crc64nvme: &f.crc64nvme,
                        checksum_algorithm: &f.checksum_algorithm,
                        checksum: &f.checksum,
                        etag: &f.etag,
                        version_id: f.version_id.as_deref(),
                        delivered_at: &f.delivered_at,
                        md5: f.md5_hex.as_deref(),
                        lines: f.lines,
                    })
                    .collect(),
                totals: JsonTotals {
                    files: files.len() as u64,
                    bytes: files.iter().map(|f| f.size).sum(),
                },
            };
            serde_json::to_vec_pretty(&doc)
        }
        ManifestFormat::AamInfo => {
            let missing = |f: &FileFacts, what| RenderError::Missing {
                file: f.relative_path.clone(),
                what,
            };
            let mut rows = Vec::with_capacity(files.len());
            for (n, f) in numbered {
                rows.push(AamFile {
                    file_byte_size: f.size,
                    file_line_count: f.lines.ok_or_else(|| missing(f, "line count"))?,
                    file_name: f.name_in(batch),
                    file_sequence_number: n,
                    md5: f.md5_hex.as_deref().ok_or_else(|| missing(f, "md5"))?,
                });
            }
            let doc = AamInfo {
                totals: AamTotals {
                    file_name: batch,
                    total_byte_size: rows.iter().map(|r| r.file_byte_size).sum(),
                    total_number_files: rows.len() as u64,
                    total_number_lines: rows.iter().map(|r| r.file_line_count).sum(),
                },
                files: rows,
            };
            serde_json::to_vec_pretty(&doc)
        }
    }
    .expect("a document of strings and numbers always encodes");
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests;
